//! The command line: parsing, help on every subcommand, completions, argument errors.
use bellman_experiments::cli::{Cli, Command, ConfigCommand, parse_device, parse_seeds, parse_size};
use clap::{CommandFactory, Parser};

#[test]
fn the_command_definition_is_consistent_and_every_subcommand_has_help() {
    Cli::command().debug_assert();
    let mut cmd = Cli::command();
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for want in ["train", "eval", "solve", "plot", "envs", "config", "completions"] {
        assert!(names.iter().any(|n| n == want), "missing subcommand {want}: {names:?}");
    }
    for sub in cmd.get_subcommands_mut() {
        let help = sub.render_help().to_string();
        assert!(help.contains("Usage:") && sub.get_about().is_some(), "{}: {help}", sub.get_name());
    }
}

#[test]
fn train_arguments_parse() {
    let cli = Cli::try_parse_from([
        "bellman",
        "train",
        "cartpole-dqn",
        "--seeds",
        "0..5",
        "--out",
        "/tmp/r",
        "--device",
        "cuda:1",
        "--set",
        "eval.episodes=3",
        "--set",
        "seed=2",
        "--actors",
        "4",
        "--quiet",
    ])
    .unwrap();
    let Command::Train(t) = cli.command else { panic!("not train") };
    assert_eq!(t.experiment.as_deref(), Some("cartpole-dqn"));
    assert_eq!(t.seeds.unwrap().0, vec![0, 1, 2, 3, 4]);
    assert_eq!(t.device, "cuda:1");
    assert_eq!(t.set, vec!["eval.episodes=3", "seed=2"]);
    assert_eq!((t.actors, t.quiet, t.out.to_str()), (Some(4), true, Some("/tmp/r")));
    // --resume needs no experiment
    let cli = Cli::try_parse_from(["bellman", "train", "--resume", "runs/x/seed-0"]).unwrap();
    assert!(matches!(cli.command, Command::Train(t) if t.experiment.is_none()));
}

#[test]
fn bad_arguments_are_errors_naming_the_value() {
    let e = Cli::try_parse_from(["bellman", "train"]).unwrap_err().to_string();
    assert!(e.contains("EXPERIMENT"), "{e}");
    let e = Cli::try_parse_from(["bellman", "train", "x", "--seed", "1", "--seeds", "0..2"]).unwrap_err().to_string();
    assert!(e.contains("cannot be used with"), "{e}");
    let e = Cli::try_parse_from(["bellman", "train", "x", "--device", "gpu"]).unwrap_err().to_string();
    assert!(e.contains("'gpu': expected cpu, cuda or cuda:N"), "{e}");
    let e = Cli::try_parse_from(["bellman", "train", "x", "--seeds", "5..2"]).unwrap_err().to_string();
    assert!(e.contains("--seeds 5..2 is empty"), "{e}");
    let e = Cli::try_parse_from(["bellman", "plot", "runs/x", "--size", "big"]).unwrap_err().to_string();
    assert!(e.contains("'big': expected WIDTHxHEIGHT"), "{e}");
    let e = Cli::try_parse_from(["bellman", "train", "x", "--overwrite", "--resume", "d"]).unwrap_err().to_string();
    assert!(e.contains("cannot be used with"), "{e}");
}

#[test]
fn value_parsers() {
    assert_eq!(parse_seeds("0..=2").unwrap().0, vec![0, 1, 2]);
    assert_eq!(parse_seeds("7").unwrap().0, vec![7]);
    assert!(parse_seeds("1,1").unwrap_err().contains("repeats"));
    assert!(parse_seeds("a..3").unwrap_err().contains("'a'"));
    assert_eq!(parse_size("800x600").unwrap(), (800, 600));
    assert!(parse_device("cuda:x").is_err());
    assert_eq!(parse_device("cuda").unwrap(), "cuda");
}

#[test]
fn eval_plot_and_config_arguments_parse() {
    let cli =
        Cli::try_parse_from(["bellman", "eval", "ck/best.safetensors", "--episodes", "100", "--seed", "9", "--json"])
            .unwrap();
    let Command::Eval(e) = cli.command else { panic!("not eval") };
    assert_eq!((e.episodes, e.seed, e.json.unwrap().to_str()), (Some(100), Some(9), Some("-")));
    let cli = Cli::try_parse_from([
        "bellman", "plot", "runs/a", "runs/b", "-o", "c.svg", "--smooth", "5", "--x", "time", "--band", "ci95",
    ])
    .unwrap();
    let Command::Plot(p) = cli.command else { panic!("not plot") };
    assert_eq!(p.paths.len(), 2);
    assert_eq!((p.smooth, p.size), (5, (1024, 640)));
    let cli = Cli::try_parse_from(["bellman", "config", "show", "cartpole-dqn", "--set", "seed=1"]).unwrap();
    assert!(matches!(cli.command, Command::Config(ConfigCommand::Show { set, .. }) if set == ["seed=1"]));
}

#[test]
fn completions_are_generated() {
    let mut out = Vec::new();
    clap_complete::generate(clap_complete::Shell::Bash, &mut Cli::command(), "bellman", &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("_bellman") && text.contains("--seeds") && text.contains("completions"));
}
