//! The demo organisation of `serve --demo`: a few dozen admins of every role, some with MFA
//! required and some without, so every page has something to show. Seeding is idempotent: a
//! second start finds the organisation and only mints a new API key to print.

use anyhow::anyhow;
use gatehouse_auth::{AuthMethod, Principal};
use gatehouse_commands::{CommandContext, Commands};
use gatehouse_domain::decide::NewAdmin;
use gatehouse_domain::{AdminId, Email, OrgId, PersonName, Role};

use crate::Config;
use crate::org::explain;

pub const OWNER_EMAIL: &str = "owner@acme.example";
/// Known on purpose: the demo is for trying Gatehouse on one's own machine.
pub const DEMO_PASSWORD: &str = "gatehouse-demo-password";

const FIRST: [&str; 12] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Leslie",
    "Radia", "John",
];
const LAST: [&str; 6] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson",
];

pub async fn seed(commands: &Commands, config: &Config) -> anyhow::Result<()> {
    let owner = find_owner(commands).await?;
    let (org_id, owner_id, fresh) = match owner {
        Some((org, admin)) => (org, admin, false),
        None => {
            let created = crate::org::create(
                commands,
                "Acme Demo",
                OWNER_EMAIL,
                Some(DEMO_PASSWORD.to_owned()),
                false,
                &config.public_url,
            )
            .await?;
            (OrgId(created.org_id), AdminId(created.owner_id), true)
        }
    };
    let principal = Principal {
        admin_id: owner_id,
        org_id,
        email: OWNER_EMAIL.to_owned(),
        role: Role::AdministratorWithBilling,
        auth_method: AuthMethod::Session,
    };
    if fresh {
        let roles = [
            Role::Administrator,
            Role::Manager,
            Role::HelpDesk,
            Role::ReadOnly,
            Role::CommandRunner,
            Role::AdministratorWithBilling,
        ];
        for i in 0..36usize {
            let first = FIRST[i % FIRST.len()];
            let last = LAST[(i / FIRST.len() + i) % LAST.len()];
            let admin = NewAdmin {
                id: AdminId::generate(),
                email: Email::parse(&format!(
                    "{}.{}{}@acme.example",
                    first.to_lowercase(),
                    last.to_lowercase(),
                    i
                ))
                .map_err(|e| anyhow!("{e}"))?,
                first_name: PersonName::parse("first_name", first).map_err(|e| anyhow!("{e}"))?,
                last_name: PersonName::parse("last_name", last).map_err(|e| anyhow!("{e}"))?,
                role: roles[i % roles.len()],
                // Two admins in five start without MFA required: the widget has work to show.
                mfa_required: Some(i % 5 >= 2),
            };
            commands
                .create_admin(
                    &CommandContext::new(principal.clone()),
                    admin,
                    DEMO_PASSWORD.to_owned(),
                )
                .await
                .map_err(explain)?;
        }
    }
    let key = commands
        .create_api_key(&CommandContext::new(principal), "demo")
        .await
        .map_err(explain)?;
    let base = config.public_url.trim_end_matches('/');
    println!("Demo organisation \"Acme Demo\" ({org_id}) is ready.");
    println!("  Owner:    {OWNER_EMAIL} / {DEMO_PASSWORD}");
    println!("  API key:  {}", key.value.1);
    let token = gatehouse_auth::factor::issue_link(
        commands.db(),
        owner_id,
        org_id,
        gatehouse_domain::login::LINK_LIFETIME,
    )
    .await?;
    println!("  Set Up MFA for the owner (one hour, once): {base}/mfa/setup?token={token}");
    match &config.smtp_url {
        Some(_) => println!("  Emails:   sent by SMTP (GATEHOUSE_SMTP_URL)"),
        None => println!(
            "  Emails:   written to {}/new (the Set Up MFA links are in them)",
            config.maildir.trim_end_matches('/')
        ),
    }
    println!(
        "  Try:      curl -H 'x-api-key: {}' {base}/api/v1/widgets/admins-without-mfa-required",
        key.value.1
    );
    Ok(())
}

async fn find_owner(commands: &Commands) -> anyhow::Result<Option<(OrgId, AdminId)>> {
    let found = gatehouse_auth::principal::by_email(commands.db(), OWNER_EMAIL).await?;
    Ok(found.map(|c| (c.org_id, c.admin_id)))
}
