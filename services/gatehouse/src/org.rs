//! `gatehouse org create`: an organisation and its first `administrator_with_billing`.

use anyhow::anyhow;
use base64::Engine;
use gatehouse_auth::{AuthMethod, Principal};
use gatehouse_commands::{CommandContext, CommandError, Commands};
use gatehouse_domain::decide::NewAdmin;
use gatehouse_domain::{AdminId, Email, PersonName, Role};
use serde::Serialize;
use uuid::Uuid;

/// What `org create` prints (with `--json`, as one object; absent fields are null).
#[derive(Debug, Serialize)]
pub struct Created {
    pub org_id: Uuid,
    pub owner_id: Uuid,
    pub owner_password: Option<String>,
    pub setup_link: Option<String>,
    pub api_key: Option<String>,
}

/// A strong password: 24 characters of base64url (144 random bits).
pub fn generate_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for a password: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Turns a command failure into the line a person at a terminal reads.
pub fn explain(e: CommandError) -> anyhow::Error {
    match e {
        CommandError::Domain(d) => anyhow!("{d}"),
        CommandError::EmailTaken => {
            anyhow!("an administrator with this email address already exists")
        }
        other => anyhow::Error::new(other),
    }
}

pub async fn create(
    commands: &Commands,
    name: &str,
    owner_email: &str,
    owner_password: Option<String>,
    with_api_key: bool,
    public_url: &str,
) -> anyhow::Result<Created> {
    let email = Email::parse(owner_email).map_err(|e| anyhow!("--owner-email {e}"))?;
    let generated = owner_password.is_none();
    let password = match owner_password {
        Some(p) => p,
        None => generate_password()?,
    };
    let owner = NewAdmin {
        id: AdminId::generate(),
        email: email.clone(),
        // The CLI asks only for the email; the owner can be renamed in the portal later.
        first_name: PersonName::parse("first_name", "Organisation").map_err(|e| anyhow!("{e}"))?,
        last_name: PersonName::parse("last_name", "Owner").map_err(|e| anyhow!("{e}"))?,
        role: Role::AdministratorWithBilling,
        mfa_required: Some(true),
    };
    let outcome = commands
        .create_org(name, owner, password.clone())
        .await
        .map_err(explain)?;
    let (org_id, owner_id) = outcome.value;
    let token = gatehouse_auth::factor::issue_link(
        commands.db(),
        owner_id,
        org_id,
        gatehouse_domain::login::LINK_LIFETIME,
    )
    .await?;
    let setup_link = Some(format!(
        "{}/mfa/setup?token={token}",
        public_url.trim_end_matches('/')
    ));
    let api_key = if with_api_key {
        let principal = Principal {
            admin_id: owner_id,
            org_id,
            email: email.as_str().to_owned(),
            role: Role::AdministratorWithBilling,
            auth_method: AuthMethod::Session,
        };
        let key = commands
            .create_api_key(
                &CommandContext::new(principal),
                "created by gatehouse org create",
            )
            .await
            .map_err(explain)?;
        Some(key.value.1)
    } else {
        None
    };
    Ok(Created {
        org_id: org_id.0,
        owner_id: owner_id.0,
        owner_password: generated.then_some(password),
        // The Set Up MFA link arrives with the login and email flows.
        setup_link,
        api_key,
    })
}
