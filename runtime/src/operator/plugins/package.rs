//! A plugin shipped as ConfigMaps: how `kubeskippy plugin configmap` packs a
//! component, and how the daemon puts it back together and checks it.
//!
//! A ConfigMap holds about 1 MiB, and JS or Python components are 12–18 MB,
//! so the component is gzipped and, when still too big, the compressed stream
//! is cut into chunks, one per ConfigMap. Every chunk carries the plugin's
//! name, kind, chunk number and the sha256 of the uncompressed component:
//! chunks of one version find each other by that pin, and the whole is
//! verified against it. The ConfigMaps' own names do not matter to the
//! daemon; the CLI names the first `NAME` and the others `NAME.chunk-K`
//! (a plugin name has no dots, so no chunk name is another plugin's).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::host::PluginKind;

/// Selects plugin ConfigMaps; its value is free (the CLI writes the name).
pub const LABEL: &str = "kubeskippy.io/plugin";
pub const NAME: &str = "kubeskippy.io/plugin-name";
pub const KIND: &str = "kubeskippy.io/plugin-kind";
pub const SHA256: &str = "kubeskippy.io/plugin-sha256";
pub const VERSION: &str = "kubeskippy.io/plugin-version";
/// `K/N`: this ConfigMap holds chunk K of N; absent means `1/1`.
pub const CHUNK: &str = "kubeskippy.io/plugin-chunk";

/// The `binaryData` key of a component stored as it is.
pub const KEY_PLAIN: &str = "plugin.wasm";
/// The key of a gzipped component (or of one chunk of the gzipped stream).
pub const KEY_GZIP: &str = "plugin.wasm.gz";

/// Raw bytes per ConfigMap. The API server refuses a ConfigMap whose data
/// passes 1 MiB, and base64 in the JSON body makes 768 KiB about 1 MiB of
/// request, well inside etcd's 1.5 MiB.
pub const CHUNK_BYTES: usize = 768 << 10;

/// More chunks than this is not a plugin anyone meant to ship.
const MAX_CHUNKS: u32 = 64;

/// A plugin name: a DNS label short enough that `NAME.chunk-64` is still a
/// valid ConfigMap name.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 52
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "plugin name {:?} must be 1-52 lowercase letters, digits and '-', starting and ending with a letter or digit",
            crate::core::untrusted::clean(name, 80)
        ))
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The ConfigMaps that ship `wasm` as plugin `name`, ready to apply.
pub fn configmaps(
    name: &str,
    kind: PluginKind,
    version: Option<&str>,
    namespace: Option<&str>,
    wasm: &[u8],
) -> Result<Vec<ConfigMap>, String> {
    check_name(name)?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(wasm)
        .and_then(|()| encoder.flush())
        .map_err(|error| format!("cannot compress: {error}"))?;
    let compressed = encoder
        .finish()
        .map_err(|error| format!("cannot compress: {error}"))?;
    let chunks: Vec<&[u8]> = compressed.chunks(CHUNK_BYTES).collect();
    let count = chunks.len();
    if count > MAX_CHUNKS as usize {
        return Err(format!(
            "{} bytes gzipped need {count} ConfigMaps; at most {MAX_CHUNKS} are read",
            compressed.len()
        ));
    }
    let digest = sha256_hex(wasm);
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| {
            let number = index + 1;
            let mut annotations = BTreeMap::from([
                (NAME.to_string(), name.to_string()),
                (KIND.to_string(), kind.as_str().to_string()),
                (SHA256.to_string(), digest.clone()),
                (CHUNK.to_string(), format!("{number}/{count}")),
            ]);
            if let Some(version) = version {
                annotations.insert(VERSION.to_string(), version.to_string());
            }
            ConfigMap {
                metadata: ObjectMeta {
                    name: Some(if number == 1 {
                        name.to_string()
                    } else {
                        format!("{name}.chunk-{number}")
                    }),
                    namespace: namespace.map(str::to_string),
                    labels: Some(BTreeMap::from([(LABEL.to_string(), name.to_string())])),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                },
                binary_data: Some(BTreeMap::from([(
                    KEY_GZIP.to_string(),
                    ByteString(chunk.to_vec()),
                )])),
                ..ConfigMap::default()
            }
        })
        .collect())
}

/// One plugin, put back together from its ConfigMaps and verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    pub name: String,
    pub kind: PluginKind,
    pub version: Option<String>,
    pub wasm: Vec<u8>,
    /// sha256 of `wasm`, checked against the pin when there was one.
    pub digest: String,
    /// The ConfigMaps it came from, chunk 1 first.
    pub sources: Vec<String>,
}

/// Why a plugin's ConfigMaps do not make a plugin (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Some chunks of the pinned version are not there (yet): normal while
    /// a multi-ConfigMap apply is under way, a rejection once it lasts.
    Incomplete(String),
    /// Nothing will make these ConfigMaps load.
    Invalid(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Incomplete(why) | Problem::Invalid(why) => f.write_str(why),
        }
    }
}

/// What one ConfigMap says about the plugin chunk it carries.
#[derive(Debug, Clone)]
struct Chunk<'a> {
    configmap: &'a str,
    kind: PluginKind,
    pin: Option<&'a str>,
    version: Option<&'a str>,
    number: u32,
    count: u32,
    gzip: bool,
    bytes: &'a [u8],
}

fn annotation<'a>(configmap: &'a ConfigMap, key: &str) -> Option<&'a str> {
    configmap
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The plugin name a labelled ConfigMap claims to carry.
pub fn plugin_name(configmap: &ConfigMap) -> Result<&str, String> {
    let name = annotation(configmap, NAME)
        .ok_or_else(|| format!("has no {NAME} annotation naming the plugin"))?;
    check_name(name)?;
    Ok(name)
}

fn read_chunk(configmap: &ConfigMap) -> Result<Chunk<'_>, String> {
    let configmap_name = configmap.metadata.name.as_deref().unwrap_or_default();
    let kind_text =
        annotation(configmap, KIND).ok_or_else(|| format!("has no {KIND} annotation"))?;
    let kind = PluginKind::parse(kind_text).ok_or_else(|| {
        format!(
            "{KIND} is {:?}; it must be prompt, parser or validator",
            crate::core::untrusted::clean(kind_text, 40)
        )
    })?;
    let pin = annotation(configmap, SHA256);
    if let Some(pin) = pin
        && (pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(format!("{SHA256} is not 64 hex digits"));
    }
    let (number, count) = match annotation(configmap, CHUNK) {
        None => (1, 1),
        Some(text) => parse_chunk(text).ok_or_else(|| {
            format!(
                "{CHUNK} is {:?}; it must be K/N with 1 <= K <= N <= {MAX_CHUNKS}",
                crate::core::untrusted::clean(text, 40)
            )
        })?,
    };
    if count > 1 && pin.is_none() {
        return Err(format!(
            "is chunk {number} of {count} but has no {SHA256} pin: chunks of one version are matched by it"
        ));
    }
    let data = configmap.binary_data.as_ref();
    let (gzip, bytes) = match (
        data.and_then(|d| d.get(KEY_PLAIN)),
        data.and_then(|d| d.get(KEY_GZIP)),
    ) {
        (Some(_), Some(_)) => {
            return Err(format!("has both {KEY_PLAIN} and {KEY_GZIP} in binaryData"));
        }
        (Some(plain), None) => (false, plain.0.as_slice()),
        (None, Some(gzipped)) => (true, gzipped.0.as_slice()),
        (None, None) => {
            return Err(format!(
                "has neither {KEY_PLAIN} nor {KEY_GZIP} in binaryData"
            ));
        }
    };
    if count > 1 && !gzip {
        return Err(format!("chunks must carry {KEY_GZIP}, not {KEY_PLAIN}"));
    }
    Ok(Chunk {
        configmap: configmap_name,
        kind,
        pin,
        version: annotation(configmap, VERSION),
        number,
        count,
        gzip,
        bytes,
    })
}

fn parse_chunk(text: &str) -> Option<(u32, u32)> {
    let (number, count) = text.split_once('/')?;
    let (number, count): (u32, u32) = (number.trim().parse().ok()?, count.trim().parse().ok()?);
    (1 <= number && number <= count && count <= MAX_CHUNKS).then_some((number, count))
}

/// Puts plugin `name` back together from the ConfigMaps that claim it.
/// Exactly one version must be complete: chunks left over from an older
/// version that lost their first chunks are ignored.
pub fn assemble(
    name: &str,
    configmaps: &[&ConfigMap],
    max_bytes: usize,
) -> Result<Package, Problem> {
    let mut chunks = Vec::new();
    for configmap in configmaps {
        let chunk = read_chunk(configmap).map_err(|why| {
            Problem::Invalid(format!(
                "ConfigMap {} {why}",
                configmap.metadata.name.as_deref().unwrap_or_default()
            ))
        })?;
        chunks.push(chunk);
    }
    // Versions by pin; an unpinned ConfigMap is a version of its own.
    let mut versions: BTreeMap<(Option<&str>, u32, usize), Vec<&Chunk>> = BTreeMap::new();
    for (index, chunk) in chunks.iter().enumerate() {
        let key = match chunk.pin {
            Some(pin) => (Some(pin), chunk.count, 0),
            None => (None, chunk.count, index),
        };
        versions.entry(key).or_default().push(chunk);
    }
    let mut complete = Vec::new();
    let mut waiting = Vec::new();
    for ((pin, count, _), mut parts) in versions {
        parts.sort_by_key(|chunk| chunk.number);
        if let Some(pair) = parts
            .windows(2)
            .find(|pair| pair[0].number == pair[1].number)
        {
            return Err(Problem::Invalid(format!(
                "ConfigMaps {} and {} both hold chunk {} of plugin {name}",
                pair[0].configmap, pair[1].configmap, pair[0].number
            )));
        }
        if parts.len() == count as usize {
            complete.push((pin, parts));
        } else {
            let missing: Vec<String> = (1..=count)
                .filter(|number| !parts.iter().any(|chunk| chunk.number == *number))
                .map(|number| number.to_string())
                .collect();
            waiting.push(format!(
                "chunk {} of {count} of the version pinned sha256:{} is missing",
                missing.join(", "),
                short(pin.unwrap_or_default())
            ));
        }
    }
    let parts = match complete.len() {
        1 => complete.pop().expect("one").1,
        0 => return Err(Problem::Incomplete(waiting.join("; "))),
        _ => {
            return Err(Problem::Invalid(format!(
                "ConfigMaps hold {} complete versions of plugin {name}; delete all but one",
                complete.len()
            )));
        }
    };
    let first = parts[0];
    if let Some(other) = parts.iter().find(|chunk| chunk.kind != first.kind) {
        return Err(Problem::Invalid(format!(
            "ConfigMaps {} and {} disagree on the plugin's kind",
            first.configmap, other.configmap
        )));
    }
    let stream_len: usize = parts.iter().map(|chunk| chunk.bytes.len()).sum();
    let wasm = if first.gzip {
        let stream = parts.iter().flat_map(|chunk| chunk.bytes.iter().copied());
        let stream: Vec<u8> = Vec::from_iter(stream);
        let mut wasm = Vec::new();
        // One byte past the cap tells "too big" from "exactly the cap".
        flate2::read::GzDecoder::new(stream.as_slice())
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut wasm)
            .map_err(|error| {
                Problem::Invalid(format!(
                    "{KEY_GZIP} of plugin {name} ({stream_len} bytes) is not gzip: {error}"
                ))
            })?;
        wasm
    } else {
        first.bytes.to_vec()
    };
    if wasm.len() > max_bytes {
        return Err(Problem::Invalid(format!(
            "plugin {name} is over the size limit of {max_bytes} bytes"
        )));
    }
    let digest = sha256_hex(&wasm);
    if let Some(pin) = first.pin
        && !pin.eq_ignore_ascii_case(&digest)
    {
        return Err(Problem::Invalid(format!(
            "plugin {name} has sha256:{}, not the pinned sha256:{}",
            short(&digest),
            short(pin)
        )));
    }
    Ok(Package {
        name: name.to_string(),
        kind: first.kind,
        version: first
            .version
            .map(|version| crate::core::untrusted::clean(version, 64)),
        wasm,
        digest,
        sources: parts
            .iter()
            .map(|chunk| chunk.configmap.to_string())
            .collect(),
    })
}

/// The first 12 hex digits: enough to tell versions apart in a message.
pub fn short(digest: &str) -> &str {
    crate::core::untrusted::cut(digest, 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 << 20;

    fn noise(len: usize) -> Vec<u8> {
        // Incompressible, so a small input still needs several chunks.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn assemble_all(configmaps: &[ConfigMap]) -> Result<Package, Problem> {
        let refs: Vec<&ConfigMap> = configmaps.iter().collect();
        assemble("big", &refs, MAX)
    }

    #[test]
    fn a_large_plugin_is_chunked_and_comes_back_whole() {
        let wasm = noise(2 * CHUNK_BYTES + 100);
        let configmaps =
            configmaps("big", PluginKind::Prompt, Some("1.2.0"), Some("ops"), &wasm).unwrap();
        assert_eq!(configmaps.len(), 3);
        let names: Vec<_> = configmaps
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["big", "big.chunk-2", "big.chunk-3"]);
        let mut shuffled = configmaps.clone();
        shuffled.reverse();
        let package = assemble_all(&shuffled).unwrap();
        assert_eq!(package.wasm, wasm);
        assert_eq!(package.kind, PluginKind::Prompt);
        assert_eq!(package.version.as_deref(), Some("1.2.0"));
        assert_eq!(package.sources, names);
    }

    #[test]
    fn a_missing_chunk_is_waited_for_and_named() {
        let wasm = noise(2 * CHUNK_BYTES + 100);
        let mut configmaps = configmaps("big", PluginKind::Prompt, None, None, &wasm).unwrap();
        configmaps.remove(1);
        match assemble_all(&configmaps) {
            Err(Problem::Incomplete(why)) => assert!(why.contains("chunk 2 of 3"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn leftover_chunks_of_an_older_version_are_ignored() {
        let old = configmaps(
            "big",
            PluginKind::Prompt,
            None,
            None,
            &noise(3 * CHUNK_BYTES),
        )
        .unwrap();
        let new = configmaps("big", PluginKind::Prompt, None, None, b"\0asm new").unwrap();
        // Applying the one-chunk version replaced the old first chunk only.
        let mut present = new.clone();
        present.extend(old[1..].iter().cloned());
        let package = assemble_all(&present).unwrap();
        assert_eq!(package.wasm, b"\0asm new");
    }

    #[test]
    fn a_digest_that_does_not_match_the_pin_is_refused() {
        let mut configmaps =
            configmaps("big", PluginKind::Validator, None, None, b"\0asm real").unwrap();
        configmaps[0]
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(SHA256.into(), sha256_hex(b"something else"));
        match assemble_all(&configmaps) {
            Err(Problem::Invalid(why)) => assert!(why.contains("not the pinned"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_size_limit() {
        let wasm = vec![0u8; 4 << 20];
        let configmaps = configmaps("big", PluginKind::Parser, None, None, &wasm).unwrap();
        assert_eq!(configmaps.len(), 1, "zeros compress to almost nothing");
        let refs: Vec<&ConfigMap> = configmaps.iter().collect();
        match assemble("big", &refs, 1 << 20) {
            Err(Problem::Invalid(why)) => assert!(why.contains("size limit"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hand_written_configmaps_are_read_and_their_mistakes_named() {
        let plain = |annotations: &[(&str, &str)], data: &[(&str, &[u8])]| ConfigMap {
            metadata: ObjectMeta {
                name: Some("strict".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            binary_data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..ConfigMap::default()
        };
        let good = plain(
            &[(NAME, "strict"), (KIND, "validator")],
            &[(KEY_PLAIN, b"\0asm plain")],
        );
        let package = assemble("strict", &[&good], MAX).unwrap();
        assert_eq!(package.wasm, b"\0asm plain");
        assert_eq!(package.digest, sha256_hex(b"\0asm plain"));

        for (configmap, expected) in [
            (
                plain(&[(NAME, "strict"), (KIND, "scanner")], &[(KEY_PLAIN, b"x")]),
                "must be prompt, parser or validator",
            ),
            (
                plain(
                    &[(NAME, "strict"), (KIND, "validator")],
                    &[("strict.wasm", b"x")],
                ),
                "has neither plugin.wasm nor plugin.wasm.gz",
            ),
            (
                plain(
                    &[(NAME, "strict"), (KIND, "validator"), (CHUNK, "1/2")],
                    &[(KEY_GZIP, b"x")],
                ),
                "no kubeskippy.io/plugin-sha256 pin",
            ),
            (
                plain(
                    &[(NAME, "strict"), (KIND, "validator"), (CHUNK, "3/2")],
                    &[(KEY_GZIP, b"x")],
                ),
                "it must be K/N",
            ),
            (
                plain(
                    &[(NAME, "strict"), (KIND, "validator")],
                    &[(KEY_GZIP, b"not gzip")],
                ),
                "is not gzip",
            ),
        ] {
            match assemble("strict", &[&configmap], MAX) {
                Err(Problem::Invalid(why)) => assert!(why.contains(expected), "{why}"),
                other => panic!("{expected}: {other:?}"),
            }
        }
        assert!(check_name("Strict").is_err());
        assert!(check_name("a.b").is_err());
        assert!(check_name("team-validator").is_ok());
    }
}
