//! Reading a config directory: every `*.yaml` file, `${VAR}` / `${VAR:-default}`
//! substituted in the raw text, parsed with the `config` crate, unknown keys
//! reported, files merged (a service, route id, or node section defined twice is an
//! error naming both files), then everything validated in one pass.

use crate::gateway::Gateway;
use crate::node::NodeConfig;
use crate::schema::GatewaySpec;
use crate::ConfigErrors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A directory loaded and validated: what `sluice run` starts from and SIGHUP swaps.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub dir: PathBuf,
    pub node: NodeConfig,
    pub gateway: Gateway,
    pub origins: Origins,
}

/// Where each merged entity came from, so validation errors can name the file and
/// the index inside *that* file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// service name -> file
    pub services: BTreeMap<String, String>,
    /// merged route index -> (file, index within that file)
    pub routes: Vec<(String, usize)>,
    /// merged rate-limit index -> (file, index within that file)
    pub rate_limits: Vec<(String, usize)>,
    /// file holding the `auth` section
    pub auth: Option<String>,
}

/// Loads every `*.yaml` (and `*.yml`) in `dir` (sorted by name), merges and
/// validates them. All problems found are returned together.
pub fn load_dir(dir: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let _ = dir;
    todo!()
}

/// Parses a gateway spec sent as JSON (admin API). Unknown keys are errors.
pub fn parse_gateway_json(body: &[u8]) -> Result<GatewaySpec, ConfigErrors> {
    let _ = body;
    todo!()
}

/// Substitutes `${VAR}` and `${VAR:-default}` using `lookup`. An unset variable
/// without a default is an error naming it; `$$` is a literal `$`.
pub fn substitute_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let _ = (text, lookup);
    todo!()
}

pub(crate) fn compile_gateway(
    spec: GatewaySpec,
    origins: &Origins,
    config_dir: Option<&Path>,
) -> Result<Gateway, ConfigErrors> {
    let _ = (spec, origins, config_dir);
    todo!()
}
