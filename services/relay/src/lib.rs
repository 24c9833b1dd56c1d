//! gatehouse-relay
