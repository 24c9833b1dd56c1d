//! Events made the way production makes them, for tests of what downstream consumers see:
//! decided by the command service, appended to the test's store, and published to the test's
//! stream by the real relay, which [`Producer`] runs in the test's process.

use std::time::Duration;

use gatehouse_auth::secretbox::SecretKey;
use gatehouse_auth::{AuthMethod, Passwords, Principal};
use gatehouse_commands::{CommandContext, Commands};
use gatehouse_domain::{AdminId, OrgId, Role};
pub use gatehouse_relay::RelayConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{TestEnv, eventually};

/// How long the relay may take to publish what was appended.
const PATIENCE: Duration = Duration::from_secs(60);

/// The command service over the test's store, and a relay publishing it to the test's stream.
pub struct Producer {
    pub commands: Commands,
    pub relay_config: RelayConfig,
    env_db: gatehouse_store::Db,
    jetstream: async_nats::jetstream::Context,
    relay: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
}

/// An organisation whose owner acts in it.
pub struct Org {
    pub id: Uuid,
    owner: Principal,
    widget_visible: bool,
}

impl Producer {
    /// Creates the test's stream with `relay_config`'s settings and starts a relay.
    pub async fn start(env: &TestEnv, relay_config: RelayConfig) -> Producer {
        gatehouse_relay::ensure_stream(&env.jetstream, &relay_config)
            .await
            .expect("the test's stream is created");
        let commands = Commands::new(
            env.db.clone(),
            Passwords::new(2),
            SecretKey::from_bytes([7; 32]),
        );
        let mut producer = Producer {
            commands,
            relay_config,
            env_db: env.db.clone(),
            jetstream: env.jetstream.clone(),
            relay: None,
        };
        producer.start_relay();
        producer
    }

    /// Starts the relay again after [`Producer::stop_relay`].
    pub fn start_relay(&mut self) {
        assert!(self.relay.is_none(), "the relay is already running");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gatehouse_relay::run(
            self.env_db.clone(),
            self.jetstream.clone(),
            self.relay_config.clone(),
            shutdown.clone(),
        ));
        self.relay = Some((shutdown, task));
    }

    /// Stops the relay, letting it finish its batch.
    pub async fn stop_relay(&mut self) {
        let (shutdown, task) = self.relay.take().expect("the relay is running");
        shutdown.cancel();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the relay stops when asked")
            .expect("the relay does not panic")
            .expect("the relay stops without error");
    }

    /// Creates an organisation and its owner (a few events).
    pub async fn create_org(&self, name: &str) -> Org {
        let owner = create_org(&self.commands, name).await;
        Org {
            id: owner.org_id.0,
            owner,
            // Every admin starts with the widget shown.
            widget_visible: true,
        }
    }

    /// Appends `count` events to `org` (its owner hides and shows their Home widget), one
    /// command each. Answers the position of the last.
    pub async fn burst(&self, org: &mut Org, count: usize) -> i64 {
        let mut last = 0;
        for _ in 0..count {
            org.widget_visible = !org.widget_visible;
            let outcome = self
                .commands
                .set_home_widget(&CommandContext::new(org.owner.clone()), org.widget_visible)
                .await
                .expect("the widget changes");
            last = outcome.position;
        }
        last
    }

    /// The store's last position.
    pub async fn head(&self) -> i64 {
        self.env_db.head().await.expect("the store's head")
    }

    /// Waits until the relay has published everything appended so far.
    pub async fn await_relayed(&self) -> i64 {
        let head = self.head().await;
        eventually(
            PATIENCE,
            &format!("the relay publishing up to {head}"),
            || async {
                let client = self.env_db.pool.get().await.expect("a connection");
                let cursor: i64 = client
                    .query_one("SELECT position FROM relay_cursor", &[])
                    .await
                    .expect("the relay cursor")
                    .get(0);
                (cursor >= head).then_some(())
            },
        )
        .await;
        head
    }
}

/// Creates an organisation through `commands` (as `gatehouse org create` does); answers its
/// owner, acting as by a session.
pub async fn create_org(commands: &Commands, name: &str) -> Principal {
    let email = format!("owner-{}@example.com", Uuid::new_v4().simple());
    let created = gatehouse::org::create(
        commands,
        name,
        &email,
        Some("a long test password, 2026".to_owned()),
        false,
        "http://127.0.0.1:8080",
    )
    .await
    .expect("an organisation");
    Principal {
        admin_id: AdminId(created.owner_id),
        org_id: OrgId(created.org_id),
        email,
        role: Role::AdministratorWithBilling,
        auth_method: AuthMethod::Session,
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some((shutdown, _)) = &self.relay {
            shutdown.cancel();
        }
    }
}
