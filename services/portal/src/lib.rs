//! gatehouse-portal
