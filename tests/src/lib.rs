//! Helpers for the integration tests: broker address, unique names, raw
//! AMQP access.
