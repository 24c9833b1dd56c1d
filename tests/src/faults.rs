//! Processes of a test's own (a NATS server on a free port), for fault tests that must never stop the shared services.
