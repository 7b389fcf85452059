//! yum (placeholder).
