use super::*;

const BASIC: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: kubeskippy-config
data:
  config.yaml: |
    ai:
      provider: ollama
      endpoint: http://ollama:11434
      model: llama2
      temperature: 0.7
      timeout: 30s
      minConfidence: 0.75
"#;

const ADVANCED: &str = r#"
ai:
  provider: ollama
  endpoint: http://ollama:11434
  model: codellama:13b  # Better for analyzing logs/code
  temperature: 0.3      # Lower = more deterministic
  timeout: 60s
  minConfidence: 0.8    # Higher threshold for production
  validateResponses: true
  maxRecommendations: 3

  # Custom prompts for specific scenarios
  customPrompts:
    memoryAnalysis: |
      Focus on memory leak patterns and JVM heap analysis...

    performanceAnalysis: |
      Analyze response time degradation and bottlenecks...
"#;

#[test]
fn the_seed_basic_configmap_loads_unchanged() {
    let config = Config::parse(BASIC).unwrap();
    assert_eq!(config.ai.endpoint.as_deref(), Some("http://ollama:11434"));
    assert_eq!(config.ai.model, "llama2");
    assert_eq!(config.ai.temperature, Some(0.7));
    assert_eq!(config.ai.timeout, Duration::from_secs(30));
    assert_eq!(config.ai.min_confidence, 0.75);
    assert!(config.ai.validate_responses);
}

#[test]
fn the_seed_advanced_block_loads_unchanged() {
    let config = Config::parse(ADVANCED).unwrap();
    assert_eq!(config.ai.model, "codellama:13b");
    assert_eq!(config.ai.timeout, Duration::from_secs(60));
    assert_eq!(config.ai.max_recommendations, 3);
    assert!(config.ai.custom_prompts["memoryAnalysis"].starts_with("Focus on memory leak"));
    let plugin_config = config.plugin_config();
    assert_eq!(plugin_config["minConfidence"], "0.8");
    assert_eq!(plugin_config["temperature"], "0.3");
    assert!(
        plugin_config["customPrompts.performanceAnalysis"].starts_with("Analyze response time")
    );
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let cases = [
        ("ai:\n  modle: llama2\n", "ai.modle: unknown field `modle`"),
        (
            "ai:\n  minConfidence: 1.5\n",
            "ai.minConfidence must be from 0 to 1",
        ),
        (
            "ai:\n  timeout: soon\n",
            "ai.timeout: invalid duration \"soon\"",
        ),
        ("ai:\n  timeout: 10 parsecs\n", "unknown unit"),
        (
            "ai:\n  endpoint: ollama:11434\n",
            "ai.endpoint must be an http:// or https:// URL",
        ),
        (
            "ai:\n  provider: skynet\n",
            "ai.provider: unknown variant `skynet`",
        ),
        (
            "ai:\n  maxRecommendations: 0\n",
            "ai.maxRecommendations must be from 1 to 20, got 0",
        ),
        (
            "ai:\n  maxRecommendations: 500\n",
            "ai.maxRecommendations must be from 1 to 20, got 500",
        ),
        (
            "ai:\n  temperature: 5\n",
            "ai.temperature must be from 0 to 2",
        ),
        (
            "plugins:\n  memoryLimit: lots\n",
            "plugins.memoryLimit: invalid memory quantity",
        ),
        ("kind: ConfigMap\ndata: {}\n", "no data.\"config.yaml\""),
        (
            "kind: ConfigMap\ndata:\n  config.yaml: |\n    ai:\n      bogus: 1\n",
            "data.\"config.yaml\".ai.bogus: unknown field `bogus`",
        ),
        ("ai: [", "did not find expected node content"),
    ];
    for (text, expected) in cases {
        let error = Config::parse(text).unwrap_err();
        assert!(
            error.contains(expected),
            "{text:?}: expected {expected:?} in {error:?}"
        );
        assert!(!error.contains('\n'), "errors are one line: {error:?}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("-1s").is_err());
    assert!(parse_duration("48h").is_err());
}

#[test]
fn the_readmes_configuration_example_loads_with_the_host_limits_it_shows() {
    let readme = include_str!("../../../../README.md");
    let section = &readme[readme
        .find("## Configuration")
        .expect("the README has the section")..];
    let start = section.find("```yaml\n").expect("an example") + "```yaml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    // The example names an API key Secret to show the field; reading it needs
    // a cluster, parsing does not.
    let config = Config::parse(example).unwrap_or_else(|error| panic!("{error}"));
    let safety = &config.safety;
    assert_eq!(safety.protected_namespaces, ["payments"]);
    assert!(!safety.allow_raw_patches);
    assert_eq!(safety.max_replicas, 20);
    assert_eq!(safety.max_cpu_limit, 16_000);
    assert_eq!(safety.max_memory_limit, 32 << 30);
    assert_eq!(safety.max_plan_age, Duration::from_secs(24 * 3600));
    assert_eq!(
        config.safety,
        SafetyConfig {
            protected_namespaces: vec!["payments".into()],
            ..SafetyConfig::default()
        },
        "the README shows the defaults"
    );
}

#[test]
fn safety_limits_are_checked_and_named() {
    for (text, expected) in [
        (
            "safety: {maxReplicas: 0}",
            "safety.maxReplicas must be at least 1",
        ),
        ("safety: {maxCpuLimit: lots}", "safety.maxCpuLimit"),
        (
            "safety: {annotationPrefixes: ['']}",
            "safety.annotationPrefixes",
        ),
        ("safety: {maxPlanAge: 2d}", "safety.maxPlanAge"),
        (
            "safety: {allowRawPatch: true}",
            "unknown field `allowRawPatch`",
        ),
    ] {
        let error = Config::parse(text).unwrap_err();
        assert!(error.contains(expected), "{text}: {error}");
    }
    let config = Config::parse("safety: {maxCpuLimit: 4, maxMemoryLimit: 8Gi}").unwrap();
    assert_eq!(config.safety.max_cpu_limit, 4000);
    assert_eq!(config.safety.max_memory_limit, 8 << 30);
}
