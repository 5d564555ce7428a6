//! Value iteration of the port's toy-text envs against Gymnasium 1.4's reference value iteration, for every file
//! under `toy_text/` of the fixture directory (`tests/data/gymnasium` of the repository, or the directory in
//! `BELLMAN_GYM_FIXTURES`) and every entry of its `value_iteration` list, as its README describes:
//! `|V - V_ref| <= 1e-9 * max(1, |V_ref|)`, `Q` within the same tolerance, and every greedy action a member of
//! `optimal_actions[s]`.
use std::path::PathBuf;

use bellman_agents::tabular::planning::{CompiledMdp, ViOptions, value_iteration};
use bellman_envs::{Mdp, Options, make_tabular};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    match std::env::var_os("BELLMAN_GYM_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/gymnasium"),
    }
}

/// Gymnasium `kwargs` as Bellman options: booleans and numbers as text, a map (`desc`) as comma-joined rows.
fn options_of(kwargs: &Value) -> Vec<String> {
    let Some(obj) = kwargs.as_object() else { return Vec::new() };
    obj.iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Array(rows) => {
                    rows.iter().map(|r| r.as_str().expect("map rows are strings")).collect::<Vec<_>>().join(",")
                }
                other => other.to_string(),
            };
            format!("{k}={text}")
        })
        .collect()
}

#[test]
fn value_iteration_matches_gymnasium_on_every_toy_text_fixture() {
    let dir = fixture_dir().join("toy_text");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixture directory {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    let mut checked = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let id = fx["env_id"].as_str().unwrap();
        let opts = options_of(&fx["kwargs"]);
        let env = make_tabular(id, &Options::parse(&opts).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (ns, na) = (fx["nS"].as_u64().unwrap() as usize, fx["nA"].as_u64().unwrap() as usize);
        assert_eq!((env.num_states(), env.num_actions()), (ns, na), "{name}");
        let model = CompiledMdp::compile(&*env).unwrap();
        for entry in fx["value_iteration"].as_array().unwrap() {
            let gamma = entry["gamma"].as_f64().unwrap();
            let tol = entry["tol"].as_f64().unwrap();
            let sol = value_iteration(&model, &ViOptions { tol, ..ViOptions::new(gamma) }).unwrap();
            let what = format!("{name} gamma {gamma}");
            assert!(sol.converged, "{what}");
            let ref_sweeps = entry["sweeps"].as_u64().unwrap() as i64;
            assert!((sol.sweeps as i64 - ref_sweeps).abs() <= 1, "{what}: {} sweeps vs {ref_sweeps}", sol.sweeps);
            let v_ref = entry["V"].as_array().unwrap();
            let q_ref = entry["Q"].as_array().unwrap();
            let optimal = entry["optimal_actions"].as_array().unwrap();
            for s in 0..ns {
                let want = v_ref[s].as_f64().unwrap();
                let tol_s = 1e-9 * want.abs().max(1.0);
                assert!((sol.values[s] - want).abs() <= tol_s, "{what}: V[{s}] = {} vs {want}", sol.values[s]);
                let q_row = q_ref[s].as_array().unwrap();
                assert_eq!(q_row.len(), na, "{what}: Q[{s}]");
                for (a, (got, qa)) in sol.q_row(s).iter().zip(q_row).enumerate() {
                    let qa = qa.as_f64().unwrap();
                    assert!((got - qa).abs() <= 1e-9 * qa.abs().max(1.0), "{what}: Q[{s}][{a}] = {got} vs {qa}");
                }
                let allowed: Vec<u64> = optimal[s].as_array().unwrap().iter().map(|a| a.as_u64().unwrap()).collect();
                assert!(
                    allowed.contains(&(sol.policy[s] as u64)),
                    "{what}: greedy action {} of state {s} not in {allowed:?}",
                    sol.policy[s]
                );
                // Same tie rule as the fixture (smallest optimal index): the policies agree exactly.
                assert_eq!(sol.policy[s] as u64, entry["policy"][s].as_u64().unwrap(), "{what}: state {s}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 2 * files.len(), "{checked} value-iteration entries in {} files", files.len());
}
