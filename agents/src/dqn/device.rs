//! Device selection: `cpu`, `cuda` or `cuda:N`.
use candle_core::Device;

use crate::error::{AgentError, Result};

/// Parses a device name and opens the device.
///
/// * `cpu`: the CPU (always available).
/// * `cuda` / `cuda:N`: GPU `N` (0 by default). In a build without the `cuda` cargo feature, or on a machine
///   without a usable NVIDIA GPU, this is an error that names the fix.
///
/// ```
/// use bellman_agents::dqn::device::parse_device;
/// assert!(parse_device("cpu").unwrap().is_cpu());
/// let err = parse_device("tpu").unwrap_err().to_string();
/// assert!(err.contains("cpu, cuda, cuda:N"), "{err}");
/// ```
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("cpu") {
        return Ok(Device::Cpu);
    }
    let ordinal = if name.eq_ignore_ascii_case("cuda") {
        0
    } else if let Some(n) = name.strip_prefix("cuda:") {
        n.parse::<usize>().map_err(|_| {
            AgentError::Config(format!("device '{name}': the GPU index after 'cuda:' must be a number such as cuda:0"))
        })?
    } else {
        return Err(AgentError::Config(format!("device '{name}' is not one of: cpu, cuda, cuda:N")));
    };
    open_cuda(name, ordinal)
}

#[cfg(feature = "cuda")]
fn open_cuda(name: &str, ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        AgentError::Config(format!(
            "device '{name}': cannot open CUDA GPU {ordinal} ({e}); check that the NVIDIA driver is installed and \
             the GPU index exists (nvidia-smi), or use --device cpu"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(name: &str, _ordinal: usize) -> Result<Device> {
    Err(AgentError::Config(format!(
        "device '{name}': this build has no CUDA support; rebuild with `cargo build --release --features cuda` \
         (it needs the CUDA toolkit at build time and the NVIDIA driver at run time), or use --device cpu"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_parses_and_bad_names_are_errors() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device(" CPU ").unwrap().is_cpu());
        let e = parse_device("cuda:x").unwrap_err().to_string();
        assert!(e.contains("cuda:0"), "{e}");
        let e = parse_device("gpu").unwrap_err().to_string();
        assert!(e.contains("gpu") && e.contains("cpu, cuda, cuda:N"), "{e}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_names_the_fix() {
        for d in ["cuda", "cuda:1"] {
            let e = parse_device(d).unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
