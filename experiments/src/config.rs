//! Experiment configs: the TOML schema, the embedded named experiments and `--set key=value` overrides.
//!
//! ```toml
//! name = "cartpole-dqn"          # experiment name: run directory <out>/<name>/seed-<seed>/ (required)
//! env = "CartPole-v1"            # registry id (required)
//! env_options = []               # ["is_slippery=false", ...] (bellman_envs::Options syntax); default []
//! seed = 0                       # default 0
//! total_steps = 50000            # env-step budget (required)
//! [eval]
//! every_steps = 10000            # periodic greedy evaluation; 0 = none; default 10000
//! episodes = 5                   # episodes per evaluation (and of the final one); default 5
//! seed_offset = 1000             # the eval env is seeded seed + seed_offset; default 1000
//! # reward_threshold = 475.0     # default: the env's registry threshold
//! [checkpoint]
//! every_steps = 0                # 0 = at every evaluation (and at the end); default 0
//! # save_replay = true           # replay buffer with every `last` (exact resume); default: with the final one
//! [agent]
//! kind = "dqn"                   # "dqn" (bellman_agents::dqn::DqnConfig) or "tabular" (TabularConfig)
//! # ... the agent config's own fields
//! ```
//!
//! Resolving a config: parse, fill every default, apply `--set` overrides type-checked against the resolved
//! value, parse again, validate.
//!
//! ```
//! use bellman_experiments::config::ExperimentConfig;
//! let text = "name = \"t\"\nenv = \"CartPole-v1\"\ntotal_steps = 100\n[agent]\nkind = \"tabular\"\n";
//! let cfg = ExperimentConfig::resolve(text, &["eval.episodes=3".to_string()]).unwrap();
//! assert_eq!(cfg.eval.episodes, 3);
//! let err = ExperimentConfig::resolve(text, &["seed=abc".to_string()]).unwrap_err().to_string();
//! assert!(err.contains("seed") && err.contains("integer"), "{err}");
//! ```
use std::fmt;
use std::path::Path;

use bellman_agents::dqn::DqnConfig;
use bellman_agents::tabular::TabularConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/named_configs.rs"));
}

/// A config error: the message names the key, the bad value and what is accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// One experiment: env, budget, evaluation, checkpoints and the agent's own config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Experiment name (letters, digits, `-`, `_`, `.`); runs go to `<out>/<name>/seed-<seed>/`. Required.
    pub name: String,
    /// Registry id of the env, e.g. `CartPole-v1`. Required.
    pub env: String,
    /// Env options as `key=value` strings (`bellman_envs::Options`). Default `[]`.
    #[serde(default)]
    pub env_options: Vec<String>,
    /// Seed of the run (agent, training env; the eval env gets `seed + eval.seed_offset`). Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Env-step budget. Required, at least 1.
    pub total_steps: u64,
    /// Periodic and final evaluation.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Checkpoint schedule.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// The agent: `kind` and the agent config's own fields.
    pub agent: AgentConfig,
}

/// Evaluation settings (`[eval]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate greedily every this many env steps; 0 = no periodic evaluation. Default 10000 (SB3
    /// `EvalCallback(eval_freq=10000)`).
    pub every_steps: u64,
    /// Episodes per evaluation, also of the final one. Default 5 (SB3 `EvalCallback(n_eval_episodes=5)`).
    pub episodes: usize,
    /// The eval env is seeded `seed + seed_offset` (then `+1`, `+2`, ... per episode). Default 1000.
    pub seed_offset: u64,
    /// Mean eval return at which the env counts as solved; default (absent): the env's registry
    /// `reward_threshold` (Gymnasium's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reward_threshold: Option<f64>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { every_steps: 10_000, episodes: 5, seed_offset: 1000, reward_threshold: None }
    }
}

/// Checkpoint settings (`[checkpoint]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Write `last` every this many env steps; 0 = at every evaluation. `last` is always written at the end
    /// and on Ctrl-C; `best` after each evaluation that improves the best mean. Default 0.
    pub every_steps: u64,
    /// Save the agent's replay buffer with `last` (`checkpoints/last.replay`, as SB3's `save_replay_buffer`), so
    /// that `--resume` continues bit-identically instead of refilling the buffer. `true`: with every `last`;
    /// `false`: never; absent (default): with the final `last` only (the end of the budget or Ctrl-C), and only
    /// when the buffer takes at most [`AUTO_SAVE_REPLAY_BYTES`] of memory. So by default a stopped or extended
    /// run resumes exactly at no cost during training (rewriting CartPole's 5 MB buffer at each of 20
    /// evaluations costs seconds of fsync), multi-GB Atari buffers are never written unasked, and a run resumed
    /// after a crash from a periodic `last` refills its buffer and says that it is not exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save_replay: Option<bool>,
}

/// The replay-buffer size up to which `checkpoint.save_replay` (when absent) saves the buffer with the final
/// `last`: 1 GiB.
pub const AUTO_SAVE_REPLAY_BYTES: u64 = 1 << 30;

impl CheckpointConfig {
    /// Whether to save a replay buffer of `bytes` bytes (None: the agent has none it can save) with a `last`
    /// checkpoint, `last_of_session` when it is the one written at the end of the budget or on Ctrl-C.
    ///
    /// ```
    /// use bellman_experiments::config::CheckpointConfig;
    /// let auto = CheckpointConfig::default();
    /// assert!(auto.saves_replay(Some(5 << 20), true) && !auto.saves_replay(Some(5 << 20), false));
    /// assert!(!auto.saves_replay(Some(7 << 30), true) && !auto.saves_replay(None, true));
    /// let always = CheckpointConfig { save_replay: Some(true), ..auto.clone() };
    /// assert!(always.saves_replay(Some(7 << 30), false));
    /// let never = CheckpointConfig { save_replay: Some(false), ..auto };
    /// assert!(!never.saves_replay(Some(1), true));
    /// ```
    pub fn saves_replay(&self, bytes: Option<u64>, last_of_session: bool) -> bool {
        match (bytes, self.save_replay) {
            (None, _) => false,
            (Some(_), Some(on)) => on,
            (Some(b), None) => last_of_session && b <= AUTO_SAVE_REPLAY_BYTES,
        }
    }
}

/// The agent section: `kind` picks the config type, whose own fields follow in the same table.
// One value per run, built once: the size difference between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AgentConfig {
    /// `kind = "dqn"`: [`DqnConfig`].
    Dqn(DqnConfig),
    /// `kind = "tabular"`: [`TabularConfig`].
    Tabular(TabularConfig),
}

/// The accepted `agent.kind` values.
pub const AGENT_KINDS: &[&str] = &["dqn", "tabular"];

impl AgentConfig {
    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentConfig::Dqn(_) => "dqn",
            AgentConfig::Tabular(_) => "tabular",
        }
    }
}

#[derive(Serialize)]
struct Tagged<'a, T> {
    kind: &'a str,
    #[serde(flatten)]
    inner: &'a T,
}

impl Serialize for AgentConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AgentConfig::Dqn(c) => Tagged { kind: "dqn", inner: c }.serialize(s),
            AgentConfig::Tabular(c) => Tagged { kind: "tabular", inner: c }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for AgentConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut t = toml::Table::deserialize(d)?;
        let kind = match t.remove("kind") {
            Some(toml::Value::String(k)) => k,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "agent.kind must be a string, one of {}; got {other}",
                    AGENT_KINDS.join(", ")
                )));
            }
            None => {
                return Err(D::Error::custom(format!("[agent] needs `kind`, one of {}", AGENT_KINDS.join(", "))));
            }
        };
        let body = toml::Value::Table(t);
        let ctx = |e: toml::de::Error| D::Error::custom(format!("in [agent] (kind = \"{kind}\"): {}", e.message()));
        match kind.as_str() {
            "dqn" => body.try_into().map(AgentConfig::Dqn).map_err(ctx),
            "tabular" => body.try_into().map(AgentConfig::Tabular).map_err(ctx),
            other => Err(D::Error::custom(format!(
                "agent.kind = \"{other}\" is not known; expected one of {}",
                AGENT_KINDS.join(", ")
            ))),
        }
    }
}

/// Names of the experiments embedded in the binary (`experiments/configs/*.toml`), sorted.
///
/// ```
/// let names = bellman_experiments::config::named();
/// assert!(names.windows(2).all(|w| w[0] <= w[1]));
/// ```
pub fn named() -> Vec<&'static str> {
    embedded::NAMED.iter().map(|(n, _)| *n).collect()
}

/// The TOML text of an embedded experiment.
pub fn named_text(name: &str) -> Option<&'static str> {
    embedded::NAMED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The TOML text of `name_or_path`: a `.toml` file (or any existing file), else an embedded experiment.
pub fn load_text(name_or_path: &str) -> Result<String, ConfigError> {
    let p = Path::new(name_or_path);
    if p.is_file() || name_or_path.ends_with(".toml") {
        return std::fs::read_to_string(p).map_err(|e| err(format!("cannot read config file {}: {e}", p.display())));
    }
    named_text(name_or_path).map(str::to_string).ok_or_else(|| {
        let names = named();
        err(format!(
            "no experiment named '{name_or_path}' and no such file; embedded experiments: {}",
            if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
        ))
    })
}

impl ExperimentConfig {
    /// Loads `name_or_path` (see [`load_text`]) and resolves it with `overrides` (see [`ExperimentConfig::resolve`]).
    pub fn load(name_or_path: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = load_text(name_or_path)?;
        Self::resolve(&text, overrides).map_err(|e| err(format!("{name_or_path}: {e}")))
    }

    /// Parses TOML text, fills every default, applies `key=value` overrides (dotted paths, type-checked
    /// against the resolved value) and validates.
    ///
    /// A DQN agent without its own `total_steps` (the budget its exploration schedule refers to) gets the
    /// experiment's, pinned in the resolved config so that a resumed or extended run keeps its schedule.
    pub fn resolve(text: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut cfg: ExperimentConfig = toml::from_str(text).map_err(|e| err(format!("invalid config: {e}")))?;
        if overrides.is_empty() {
            cfg.pin_agent_budget();
            cfg.validate()?;
            return Ok(cfg);
        }
        let mut table = cfg.to_table()?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let mut cfg: ExperimentConfig = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            err(format!("invalid config after --set {}: {}", overrides.join(" "), e.message()))
        })?;
        cfg.pin_agent_budget();
        cfg.validate()?;
        Ok(cfg)
    }

    fn pin_agent_budget(&mut self) {
        if let AgentConfig::Dqn(d) = &mut self.agent
            && d.total_steps.is_none()
        {
            d.total_steps = Some(self.total_steps);
        }
    }

    /// The config as a TOML table, every default filled in.
    pub fn to_table(&self) -> Result<toml::Table, ConfigError> {
        match toml::Value::try_from(self) {
            Ok(toml::Value::Table(t)) => Ok(t),
            Ok(_) => Err(err("config did not serialize to a table")),
            Err(e) => Err(err(format!("cannot serialize config: {e}"))),
        }
    }

    /// The resolved config as TOML text (what `config.toml` in a run directory holds).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| err(format!("cannot serialize config: {e}")))
    }

    /// Checks ranges: a non-empty path-safe name, `total_steps >= 1`, `eval.episodes >= 1`, parseable env options.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || self.name.starts_with('.')
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(err(format!(
                "name = {:?}: expected a non-empty name of letters, digits, '-', '_' or '.' (not starting with '.')",
                self.name
            )));
        }
        if self.env.is_empty() {
            return Err(err("env = \"\": expected a registry id such as \"CartPole-v1\" (see `bellman envs`)"));
        }
        if self.total_steps == 0 {
            return Err(err("total_steps = 0: expected at least 1"));
        }
        if self.eval.episodes == 0 {
            return Err(err("eval.episodes = 0: expected at least 1"));
        }
        if let Some(t) = self.eval.reward_threshold
            && !t.is_finite()
        {
            return Err(err(format!("eval.reward_threshold = {t}: expected a finite number")));
        }
        bellman_envs::Options::parse(&self.env_options)
            .map_err(|e| err(format!("env_options = {:?}: {e}", self.env_options)))?;
        Ok(())
    }

    /// The reward threshold: `eval.reward_threshold`, else the env's registry threshold (None when neither).
    pub fn reward_threshold(&self) -> Option<f64> {
        self.eval
            .reward_threshold
            .or_else(|| bellman_envs::registry::spec(&self.env).ok().and_then(|s| s.reward_threshold))
    }

    /// The env setup the agents take.
    pub fn env_setup(&self) -> bellman_agents::trainer::EnvSetup {
        bellman_agents::trainer::EnvSetup { id: self.env.clone(), options: self.env_options.clone() }
    }
}

impl fmt::Display for ExperimentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_toml() {
            Ok(s) => f.write_str(&s),
            Err(e) => write!(f, "# {e}"),
        }
    }
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a section",
    }
}

/// Parses a command-line value as a TOML literal (`3`, `0.5`, `true`, `"x"`, `[1, 2]`); None when it is not one.
fn parse_literal(raw: &str) -> Option<toml::Value> {
    let doc: toml::Table = toml::from_str(&format!("v = {raw}")).ok()?;
    doc.get("v").cloned()
}

/// Converts `raw` to the type of `current` (the resolved value), or explains what `key` expects.
fn typed_value(key: &str, raw: &str, current: Option<&toml::Value>) -> Result<toml::Value, ConfigError> {
    let lit = parse_literal(raw);
    let bad = |want: &str| err(format!("--set {key}={raw}: `{key}` expects {want}, got '{raw}'"));
    match current {
        None => Ok(lit.unwrap_or_else(|| toml::Value::String(raw.to_string()))),
        Some(toml::Value::Integer(_)) => match lit {
            Some(v @ toml::Value::Integer(_)) => Ok(v),
            _ => Err(bad("an integer")),
        },
        Some(toml::Value::Float(_)) => match lit {
            Some(toml::Value::Integer(i)) => Ok(toml::Value::Float(i as f64)),
            Some(v @ toml::Value::Float(_)) => Ok(v),
            _ => Err(bad("a number")),
        },
        Some(toml::Value::Boolean(_)) => match lit {
            Some(v @ toml::Value::Boolean(_)) => Ok(v),
            _ => Err(bad("true or false")),
        },
        Some(toml::Value::String(_)) => match lit {
            Some(v @ toml::Value::String(_)) => Ok(v),
            _ => Ok(toml::Value::String(raw.to_string())),
        },
        Some(toml::Value::Array(cur)) => match lit {
            Some(v @ toml::Value::Array(_)) => Ok(v),
            _ => {
                // `a,b,c` without brackets: a list of literals (strings when not literals).
                let elem = cur.first();
                let items: Result<Vec<_>, _> = raw
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| typed_value(key, s, elem))
                    .collect();
                items.map(toml::Value::Array).map_err(|_| bad(&format!("a list like [{}]", raw)))
            }
        },
        Some(toml::Value::Table(_)) => {
            Err(err(format!("--set {key}={raw}: `{key}` is a section; set one of its fields, e.g. {key}.<field>=...")))
        }
        Some(v @ toml::Value::Datetime(_)) => Err(bad(type_name(v))),
    }
}

/// Applies one `key=value` override (dotted path) to a resolved config table.
///
/// The value is type-checked against the resolved value at `key`; a key that is not in the resolved config is
/// inserted as given and left to the schema (which rejects unknown keys by name).
pub fn apply_override(table: &mut toml::Table, spec: &str) -> Result<(), ConfigError> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| err(format!("--set '{spec}': expected key=value, e.g. --set total_steps=100000")))?;
    let (key, raw) = (key.trim(), raw.trim());
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(err(format!("--set '{spec}': expected a dotted key such as eval.episodes before '='")));
    }
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        let known: Vec<String> = cur.keys().cloned().collect();
        let next = cur.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match next {
            toml::Value::Table(t) => t,
            other => {
                let path = parts[..=i].join(".");
                return Err(err(format!(
                    "--set {spec}: `{path}` is {} ({other}), not a section; keys at this level: {}",
                    type_name(other),
                    known.join(", ")
                )));
            }
        };
    }
    let last = parts[parts.len() - 1];
    let v = typed_value(key, raw, cur.get(last))?;
    cur.insert(last.to_string(), v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name = \"t\"\nenv = \"CartPole-v1\"\ntotal_steps = 100\n[agent]\nkind = \"tabular\"\n";

    fn resolve(sets: &[&str]) -> Result<ExperimentConfig, ConfigError> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        ExperimentConfig::resolve(BASE, &sets)
    }

    #[test]
    fn defaults_are_filled() {
        let c = resolve(&[]).unwrap();
        assert_eq!(c.seed, 0);
        assert_eq!(c.eval, EvalConfig::default());
        assert_eq!(c.checkpoint.every_steps, 0);
        assert_eq!(c.checkpoint.save_replay, None);
        let c = resolve(&["checkpoint.save_replay=false"]).unwrap();
        assert_eq!(c.checkpoint.save_replay, Some(false));
        assert_eq!(ExperimentConfig::resolve(&c.to_toml().unwrap(), &[]).unwrap(), c);
        let e = resolve(&["checkpoint.save_replay=sometimes"]).unwrap_err().0;
        assert!(e.contains("save_replay"), "{e}");
        assert_eq!(c.agent.kind(), "tabular");
    }

    #[test]
    fn resolved_toml_round_trips() {
        let c = resolve(&["seed=7", "eval.reward_threshold=0.5", "env_options=is_slippery=false"]).unwrap();
        let text = c.to_toml().unwrap();
        let back = ExperimentConfig::resolve(&text, &[]).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.env_options, vec!["is_slippery=false".to_string()]);
        assert_eq!(back.eval.reward_threshold, Some(0.5));
    }

    #[test]
    fn overrides_are_type_checked() {
        let e = resolve(&["total_steps=1.5"]).unwrap_err().0;
        assert!(e.contains("`total_steps` expects an integer, got '1.5'"), "{e}");
        let e = resolve(&["eval.episodes=many"]).unwrap_err().0;
        assert!(e.contains("`eval.episodes` expects an integer"), "{e}");
        let e = resolve(&["eval=3"]).unwrap_err().0;
        assert!(e.contains("is a section"), "{e}");
        let e = resolve(&["seed"]).unwrap_err().0;
        assert!(e.contains("expected key=value"), "{e}");
        let e = resolve(&["eval.bogus=1"]).unwrap_err().0;
        assert!(e.contains("bogus"), "{e}");
        let e = resolve(&["seed.x=1"]).unwrap_err().0;
        assert!(e.contains("`seed` is an integer"), "{e}");
        // an integer where a float is expected is accepted; a string field takes the raw text
        let c = resolve(&["eval.reward_threshold=475", "env=FrozenLake-v1", "name=x-2"]).unwrap();
        assert_eq!(c.eval.reward_threshold, Some(475.0));
        assert_eq!(c.env, "FrozenLake-v1");
        assert_eq!(c.name, "x-2");
    }

    #[test]
    fn unknown_keys_and_kinds_are_errors() {
        let e = ExperimentConfig::resolve(&format!("bogus = 1\n{BASE}"), &[]).unwrap_err().0;
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = ExperimentConfig::resolve(&BASE.replace("tabular", "ppo"), &[]).unwrap_err().0;
        assert!(e.contains("\"ppo\" is not known") && e.contains("dqn, tabular"), "{e}");
        let e = ExperimentConfig::resolve(&format!("{BASE}surprise = 3\n"), &[]).unwrap_err().0;
        assert!(e.contains("[agent]") && e.contains("surprise"), "{e}");
        let e = ExperimentConfig::resolve(&BASE.replace("100", "\"many\""), &[]).unwrap_err().0;
        assert!(e.contains("total_steps"), "{e}");
    }

    #[test]
    fn validation_names_the_value() {
        assert!(resolve(&["total_steps=0"]).unwrap_err().0.contains("total_steps = 0"));
        assert!(resolve(&["name=../x"]).unwrap_err().0.contains("name = \"../x\""));
        assert!(resolve(&["eval.episodes=0"]).unwrap_err().0.contains("eval.episodes = 0"));
        assert!(resolve(&["env_options=novalue"]).unwrap_err().0.contains("env_options"));
    }

    #[test]
    fn every_embedded_config_resolves() {
        for n in named() {
            let c = ExperimentConfig::load(n, &[]).unwrap_or_else(|e| panic!("configs/{n}.toml: {e}"));
            assert_eq!(c.name, n, "the name field of configs/{n}.toml must be its file name");
        }
        let e = load_text("no-such-experiment").unwrap_err().0;
        assert!(e.contains("no experiment named 'no-such-experiment'"), "{e}");
    }
}
