//! Deterministic resource ids (UUIDv5 over source system + natural key).
