//! Parity of the toy-text models with Gymnasium 1.4.0: for every `toy_text/*.json` fixture (see
//! `tests/data/gymnasium/README.md`), the env built from the file's `env_id` and `kwargs` must have the same nS,
//! nA, initial distribution, `desc` and `P` table, entry for entry with exact equality and in the same order.
//!
//! The fixture directory is `$BELLMAN_GYM_FIXTURES` (default `tests/data/gymnasium` of the repository).
use std::path::PathBuf;

use bellman_envs::toy_text::{FrozenLakeConfig, Taxi};
use bellman_envs::{Mdp, Options, Outcome, registry};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    std::env::var_os("BELLMAN_GYM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/gymnasium")))
        .join("toy_text")
}

/// A fixture, parsed.
#[derive(Debug, Clone)]
struct Fixture {
    env_id: String,
    kwargs: serde_json::Map<String, Value>,
    max_episode_steps: Option<u64>,
    ns: usize,
    na: usize,
    isd: Vec<f64>,
    desc: Option<Vec<String>>,
    /// `p[s][a]` = the outcomes, in Gymnasium's order.
    p: Vec<Vec<Vec<Outcome>>>,
}

fn parse_fixture(v: &Value) -> Result<Fixture, String> {
    let field = |k: &str| v.get(k).ok_or_else(|| format!("missing field '{k}'"));
    let as_usize = |x: &Value, what: &str| x.as_u64().map(|n| n as usize).ok_or_else(|| format!("{what}: not an int"));
    let ns = as_usize(field("nS")?, "nS")?;
    let na = as_usize(field("nA")?, "nA")?;
    let isd = field("isd")?
        .as_array()
        .ok_or("isd: not an array")?
        .iter()
        .map(|x| x.as_f64().ok_or_else(|| "isd: not a number".to_string()))
        .collect::<Result<Vec<f64>, String>>()?;
    let desc = match field("desc")? {
        Value::Null => None,
        Value::Array(rows) => Some(
            rows.iter()
                .map(|r| r.as_str().map(str::to_string).ok_or_else(|| "desc: not a string".to_string()))
                .collect::<Result<Vec<String>, String>>()?,
        ),
        other => return Err(format!("desc: unexpected {other}")),
    };
    let pj = field("P")?.as_object().ok_or("P: not an object")?;
    if pj.len() != ns {
        return Err(format!("P has {} states, nS = {ns}", pj.len()));
    }
    let mut p = Vec::with_capacity(ns);
    for s in 0..ns {
        let ps = pj.get(&s.to_string()).and_then(Value::as_object).ok_or_else(|| format!("P[{s}] missing"))?;
        if ps.len() != na {
            return Err(format!("P[{s}] has {} actions, nA = {na}", ps.len()));
        }
        let mut row = Vec::with_capacity(na);
        for a in 0..na {
            let list =
                ps.get(&a.to_string()).and_then(Value::as_array).ok_or_else(|| format!("P[{s}][{a}] missing"))?;
            let mut outs = Vec::with_capacity(list.len());
            for (i, e) in list.iter().enumerate() {
                let bad = || format!("P[{s}][{a}][{i}] is not [prob, next_state, reward, terminated]: {e}");
                let e = e.as_array().filter(|e| e.len() == 4).ok_or_else(bad)?;
                outs.push(Outcome {
                    prob: e[0].as_f64().ok_or_else(bad)?,
                    next_state: e[1].as_u64().ok_or_else(bad)? as usize,
                    reward: e[2].as_f64().ok_or_else(bad)?,
                    terminal: e[3].as_bool().ok_or_else(bad)?,
                });
            }
            row.push(outs);
        }
        p.push(row);
    }
    Ok(Fixture {
        env_id: field("env_id")?.as_str().ok_or("env_id: not a string")?.to_string(),
        kwargs: field("kwargs")?.as_object().ok_or("kwargs: not an object")?.clone(),
        max_episode_steps: field("max_episode_steps")?.as_u64(),
        ns,
        na,
        isd,
        desc,
        p,
    })
}

/// Gymnasium kwargs as Bellman options: lists become comma-separated, `map_name=None` becomes `random`.
fn kwargs_to_options(kwargs: &serde_json::Map<String, Value>) -> Result<Options, String> {
    let mut o = Options::new();
    for (k, v) in kwargs {
        let text = match v {
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(format!("kwarg {k}: unsupported list item {other}")),
                })
                .collect::<Result<Vec<String>, String>>()?
                .join(","),
            Value::Null if k == "map_name" => "random".into(),
            Value::Null => continue, // Gymnasium's default
            Value::Object(_) => return Err(format!("kwarg {k}: unsupported value {v}")),
        };
        o = o.with(k, text);
    }
    Ok(o)
}

/// The `desc` of the concrete env the fixture names (None for CliffWalking, which has none in Gymnasium).
fn concrete_desc(env_id: &str, opts: &Options) -> Result<Option<Vec<String>>, String> {
    let fl = |base: FrozenLakeConfig| -> Result<Option<Vec<String>>, String> {
        let c = FrozenLakeConfig::from_options(env_id, opts, base).map_err(|e| e.to_string())?;
        let env = bellman_envs::toy_text::FrozenLake::new(c).map_err(|e| e.to_string())?;
        Ok(Some(env.desc().to_vec()))
    };
    match env_id {
        "FrozenLake-v1" => fl(FrozenLakeConfig::default()),
        "FrozenLake8x8-v1" => fl(FrozenLakeConfig::eight_by_eight()),
        "Taxi-v4" => Ok(Some(Taxi::desc())),
        "CliffWalking-v1" | "CliffWalkingSlippery-v1" => Ok(None),
        other => Err(format!("no concrete env for id '{other}'")),
    }
}

/// Compares a model with a fixture: nS, nA, isd and every `P[s][a]` entry, exactly and in order.
fn check_model(m: &dyn Mdp, f: &Fixture) -> Result<(), String> {
    if m.num_states() != f.ns || m.num_actions() != f.na {
        return Err(format!("shape: ours ({}, {}), gymnasium ({}, {})", m.num_states(), m.num_actions(), f.ns, f.na));
    }
    let isd = m.initial_distribution();
    if isd.len() != f.isd.len() {
        return Err(format!("isd length: ours {}, gymnasium {}", isd.len(), f.isd.len()));
    }
    for (s, (ours, theirs)) in isd.iter().zip(&f.isd).enumerate() {
        if ours.to_bits() != theirs.to_bits() {
            return Err(format!("isd[{s}]: ours {ours:?}, gymnasium {theirs:?}"));
        }
    }
    for s in 0..f.ns {
        for a in 0..f.na {
            let (ours, theirs) = (m.outcomes(s, a), &f.p[s][a]);
            if ours.len() != theirs.len() {
                return Err(format!(
                    "P[{s}][{a}] has {} outcomes, gymnasium {}: ours {ours:?}, gymnasium {theirs:?}",
                    ours.len(),
                    theirs.len()
                ));
            }
            for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
                let same = o.prob.to_bits() == t.prob.to_bits()
                    && o.next_state == t.next_state
                    && o.reward.to_bits() == t.reward.to_bits()
                    && o.terminal == t.terminal;
                if !same {
                    return Err(format!("P[{s}][{a}][{i}]: ours {o:?}, gymnasium {t:?}"));
                }
            }
        }
    }
    Ok(())
}

fn fixture_files() -> Vec<PathBuf> {
    let dir = fixture_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read fixture dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn load(path: &PathBuf) -> Fixture {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_fixture(&v).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_toy_text_fixture_matches_gymnasium_exactly() {
    let files = fixture_files();
    // The README lists nine files; more variants may be added, never fewer.
    assert!(files.len() >= 9, "expected at least 9 toy-text fixtures, found {}", files.len());
    let mut checked = Vec::new();
    for path in &files {
        let f = load(path);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let opts = kwargs_to_options(&f.kwargs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let env = registry::make_tabular(&f.env_id, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_model(&*env, &f).unwrap_or_else(|e| panic!("{name}: {e}"));
        let desc = concrete_desc(&f.env_id, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(desc, f.desc, "{name}: desc");
        // The time limit: a max_episode_steps kwarg (gym.make's) overrides the registered one.
        let limit = match f.kwargs.get("max_episode_steps") {
            Some(v) => v.as_u64(),
            None => registry::spec(&f.env_id).unwrap().max_episode_steps,
        };
        assert_eq!(limit, f.max_episode_steps, "{name}: max_episode_steps");
        checked.push(name);
    }
    assert_eq!(checked.len(), files.len());
}

fn frozen_lake_fixture() -> Fixture {
    load(&fixture_dir().join("FrozenLake-v1_4x4_slippery.json"))
}

fn frozen_lake_model() -> Box<dyn registry::TabularEnv> {
    registry::make_tabular("FrozenLake-v1", &Options::new()).unwrap()
}

#[test]
fn checker_accepts_the_true_table() {
    check_model(&*frozen_lake_model(), &frozen_lake_fixture()).unwrap();
}

#[test]
fn checker_catches_a_corrupted_entry() {
    let env = frozen_lake_model();
    let base = frozen_lake_fixture();
    let mut f = base.clone();
    f.p[6][1][2].prob = f64::from_bits(f.p[6][1][2].prob.to_bits() + 1); // one ulp
    let err = check_model(&*env, &f).unwrap_err();
    assert!(err.contains("P[6][1][2]"), "{err}");
    let mut f = base.clone();
    f.p[14][2][1].terminal = !f.p[14][2][1].terminal;
    assert!(check_model(&*env, &f).unwrap_err().contains("P[14][2][1]"));
    let mut f = base.clone();
    f.p[0][0][0].next_state = 1;
    assert!(check_model(&*env, &f).is_err());
    let mut f = base.clone();
    f.p[0][3].swap(0, 1); // same outcomes, other order
    assert!(check_model(&*env, &f).unwrap_err().contains("P[0][3][0]"));
    let mut f = base;
    f.isd[0] = 0.5;
    assert!(check_model(&*env, &f).unwrap_err().contains("isd[0]"));
}

#[test]
fn checker_catches_a_missing_entry() {
    let env = frozen_lake_model();
    let mut f = frozen_lake_fixture();
    f.p[9][0].pop();
    let err = check_model(&*env, &f).unwrap_err();
    assert!(err.contains("P[9][0] has 3 outcomes, gymnasium 2"), "{err}");
    // A state or action missing from the JSON itself is a parse error.
    let path = fixture_dir().join("FrozenLake-v1_4x4_slippery.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["P"]["3"].as_object_mut().unwrap().remove("2");
    assert!(parse_fixture(&v).unwrap_err().contains("P[3]"));
    v["P"].as_object_mut().unwrap().remove("7");
    assert!(parse_fixture(&v).unwrap_err().contains("P has 15 states"));
}

#[test]
fn unknown_kwargs_and_ids_are_errors() {
    let mut kw = serde_json::Map::new();
    kw.insert("is_slipery".into(), Value::Bool(true));
    let o = kwargs_to_options(&kw).unwrap();
    let err = registry::make_tabular("FrozenLake-v1", &o).err().unwrap().to_string();
    assert!(err.contains("is_slipery") && err.contains("is_slippery"), "{err}");
    assert!(registry::make_tabular("FrozenLake-v2", &Options::new()).is_err());
    assert!(concrete_desc("FrozenLake-v2", &Options::new()).is_err());
}
