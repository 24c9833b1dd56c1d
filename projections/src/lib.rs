//! gatehouse-projections
