//! String-keyed env options (`is_slippery=false`, `map_name=8x8`) as given on the command line, read into each
//! env's typed config with clear errors for unknown keys and bad values.
use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::error::{EnvError, Result};

/// Options for [`crate::registry::make_with`]: `key=value` pairs, read by the env's typed constructor.
///
/// Every key must be read by the env (or be `max_episode_steps`, which the registry reads): a key nobody
/// reads is an [`EnvError::UnknownOption`] naming the accepted keys.
///
/// ```
/// use bellman_envs::Options;
/// let o = Options::parse(["is_slippery=false", "map_name=8x8"]).unwrap();
/// assert_eq!(o.get_bool("FrozenLake-v1", "is_slippery").unwrap(), Some(false));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Options {
    entries: Vec<(String, String)>,
    used: RefCell<BTreeSet<String>>,
}

impl Options {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `key=value` strings.
    pub fn parse<I, S>(items: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut o = Options::new();
        for it in items {
            let it = it.as_ref();
            let (k, v) = it.split_once('=').ok_or_else(|| EnvError::BadOption {
                env: String::new(),
                key: it.to_string(),
                value: String::new(),
                reason: "options are written key=value".into(),
            })?;
            o = o.with(k.trim(), v.trim());
        }
        Ok(o)
    }

    /// Adds (or replaces) one option.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.entries.retain(|(k, _)| k != key);
        self.entries.push((key.to_string(), value.to_string()));
        self
    }

    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The raw value of `key`, marking it read.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        let v = self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if v.is_some() {
            self.used.borrow_mut().insert(key.to_string());
        }
        v
    }

    fn parse_with<T>(&self, env: &str, key: &str, what: &str, f: impl Fn(&str) -> Option<T>) -> Result<Option<T>> {
        match self.get_str(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| EnvError::BadOption {
                env: env.into(),
                key: key.into(),
                value: v.into(),
                reason: format!("expected {what}"),
            }),
        }
    }

    /// A boolean (`true`/`false`, `1`/`0`).
    pub fn get_bool(&self, env: &str, key: &str) -> Result<Option<bool>> {
        self.parse_with(env, key, "true or false", |v| match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        })
    }

    /// A finite float.
    pub fn get_f64(&self, env: &str, key: &str) -> Result<Option<f64>> {
        self.parse_with(env, key, "a finite number", |v| v.parse::<f64>().ok().filter(|x| x.is_finite()))
    }

    /// A non-negative integer.
    pub fn get_u64(&self, env: &str, key: &str) -> Result<Option<u64>> {
        self.parse_with(env, key, "a non-negative integer", |v| v.parse::<u64>().ok())
    }

    /// A list of map rows: `SFFF,FHFH,FFFH,HFFG` (rows separated by `,` `/` or `;`).
    pub fn get_rows(&self, env: &str, key: &str) -> Result<Option<Vec<String>>> {
        self.parse_with(env, key, "map rows separated by ','", |v| {
            let rows: Vec<String> =
                v.split([',', '/', ';']).map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect();
            (!rows.is_empty()).then_some(rows)
        })
    }

    /// Errors on any key that was not read, listing `known` (the keys the env accepts).
    pub fn finish(&self, env: &str, known: &[&str]) -> Result<()> {
        let used = self.used.borrow();
        for (k, _) in &self.entries {
            if !used.contains(k) {
                return Err(EnvError::UnknownOption {
                    env: env.into(),
                    key: k.clone(),
                    known: if known.is_empty() { "(none)".into() } else { known.join(", ") },
                });
            }
        }
        Ok(())
    }
}
