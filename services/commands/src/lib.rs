//! gatehouse-commands
