//! gatehouse-auth
