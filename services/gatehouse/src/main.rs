//! `gatehouse`: the one binary (SPEC §2).

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use gatehouse::{Config, Role, org, serve, services, telemetry};
use gatehouse_auth::Passwords;
use gatehouse_auth::secretbox::SecretKey;
use gatehouse_commands::Commands;

/// jemalloc rather than glibc's allocator: under the commands' load glibc's `malloc` and `free`
/// took about a quarter of serve's CPU. Tuned where it is compiled (`.cargo/config.toml`); see
/// docs/decisions.md, "jemalloc as the allocator".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Enforces MFA for the administrators of an admin portal"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrates the database (creating it if missing), then runs every role in one process.
    Serve {
        /// Also seed a demo organisation and print how to log in.
        #[arg(long)]
        demo: bool,
        /// Run only these roles (comma-separated): api, relay, projections, mailer.
        #[arg(long, default_value = "api,relay,projections,mailer")]
        roles: String,
    },
    /// Applies migrations and exits.
    Migrate,
    /// Organisations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Read models.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// The audit history: export it, verify its hash chain.
    Audit {
        #[command(subcommand)]
        command: gatehouse::audit::AuditCommand,
    },
    /// The relay to NATS JetStream: publish a range of the event store again.
    Relay {
        #[command(subcommand)]
        command: gatehouse::relay::RelayCommand,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Creates an organisation and its first administrator_with_billing.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner_email: String,
        /// Without it, a strong password is generated and printed.
        #[arg(long)]
        owner_password: Option<String>,
        /// Also create and print an API key for the owner.
        #[arg(long)]
        print_api_key: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Rebuilds read models from the event store beside the live ones, then swaps them in.
    Rebuild {
        /// Projections to rebuild (all when none is named).
        names: Vec<String>,
    },
}

#[tokio::main]
async fn main() {
    telemetry::init_logs();
    let cli = Cli::parse();
    if let Command::Relay { command } = &cli.command
        && let Err(message) = command.check()
    {
        // A usage error, reported (and exiting 2) the way clap reports its own.
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit();
    }
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command {
        Command::Audit { command } => {
            if !gatehouse::audit::run(&config, command).await? {
                // The report is printed; not verifying is the command's answer, not an error.
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Relay { command } => gatehouse::relay::run(&config, command).await,
        Command::Serve { demo, roles } => {
            let roles = Role::parse_list(&roles)?;
            serve::run(&config, &roles, demo).await
        }
        Command::Migrate => {
            services::database(&config).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Org {
            command:
                OrgCommand::Create {
                    name,
                    owner_email,
                    owner_password,
                    print_api_key,
                    json,
                },
        } => {
            let db = services::database(&config).await?;
            // Creating an organisation seals no TOTP secret: any key will do without one set.
            let key = match config.secret_key(false) {
                Ok(key) => key,
                Err(_) => SecretKey::random()?,
            };
            let commands = Commands::new(db, Passwords::default(), key);
            let created = org::create(
                &commands,
                &name,
                &owner_email,
                owner_password,
                print_api_key,
                &config.public_url,
            )
            .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&created).context("encoding the answer")?
                );
            } else {
                println!("Organisation {name:?} created: {}", created.org_id);
                println!("Owner {owner_email}: {}", created.owner_id);
                if let Some(p) = &created.owner_password {
                    println!("Owner password (shown once): {p}");
                }
                if let Some(link) = &created.setup_link {
                    println!("Set Up MFA (valid for one hour, once): {link}");
                }
                if let Some(key) = &created.api_key {
                    println!("API key (shown once): {key}");
                }
            }
            Ok(())
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild { names },
        } => {
            let db = services::database(&config).await?;
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} events, {per_sec}, ETA {eta}",
                )
                .context("progress bar template")?
                .progress_chars("=> "),
            );
            bar.set_message("rebuilding");
            let progress = {
                let bar = bar.clone();
                move |done: u64, total: u64| {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            };
            gatehouse_projections::rebuild(&db, &names, progress).await?;
            bar.finish_with_message("rebuilt");
            Ok(())
        }
    }
}
