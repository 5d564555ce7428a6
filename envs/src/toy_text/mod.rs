//! (being written)
use crate::registry::EnvSpec;

pub(crate) fn specs() -> Vec<EnvSpec> {
    Vec::new()
}
