//! The mailer's metrics (Prometheus names).

use crate::intent::MailKind;
use crate::ledger::DeliveryState;

pub const MAILS: &str = "gatehouse_mails_total";

pub fn describe() {
    metrics::describe_counter!(
        MAILS,
        "Emails the mailer settled, by kind (setup, reset_confirmation) and outcome (sent, failed, skipped, unknown)."
    );
}

/// Counts one outcome of one email.
pub fn mail(kind: MailKind, outcome: DeliveryState) {
    metrics::counter!(MAILS, "kind" => kind.as_str(), "outcome" => outcome.as_str()).increment(1);
}
