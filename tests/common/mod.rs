//! Helpers shared by the integration tests.

use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};

/// A proptest config that keeps every failing case in the top-level
/// `proptest-regressions/` directory, which is committed.
#[allow(dead_code)]
pub fn persisted(file: &'static str) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..ProptestConfig::default()
    }
}
