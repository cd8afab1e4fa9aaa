//! Helpers shared by the integration tests (each test file uses a part).
#![allow(dead_code)]

pub mod drain;
pub mod echoxfer_wormhole;
pub mod files;
pub mod process;
pub mod session;
pub mod shell;
pub mod tree;
pub mod wormhole_servers;

use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};

/// A proptest config that keeps every failing case in the top-level
/// `proptest-regressions/` directory, which is committed.
pub fn persisted(file: &'static str) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..ProptestConfig::default()
    }
}
