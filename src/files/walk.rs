//! TEMPORARY shim, replaced by the walk branch on merge.
#![allow(missing_docs, dead_code)]
use std::io;
use std::path::PathBuf;

use crate::xfer::{FileSpec, PathLimits};

#[derive(Debug, Clone)]
pub struct WalkEntry {
    pub spec: FileSpec,
    pub local: PathBuf,
    pub dev_ino: (u64, u64),
}

#[derive(Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub why: String,
}

pub struct Walk {
    pub entries: Vec<WalkEntry>,
    pub skipped: Vec<Skipped>,
}

pub fn walk(_roots: &[PathBuf], _limits: &PathLimits) -> io::Result<Walk> {
    Err(io::Error::other("shim"))
}
