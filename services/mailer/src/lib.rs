//! The mailer: sends the Set Up MFA and confirmation emails (in progress).
