//! "Did you mean …?": the allowed name nearest to one that is not allowed, for diagnostics
//! about a misspelt key or name. Similarity is strsim's; what counts as near enough is here.
//!
//! Names are compared as a person reads them: case, `_` and `-` do not matter
//! (`HL7-Version` is `hl7_version`). Then a name that holds the other whole (`version` for
//! `hl7_version`, `max_length` for `max_len`, `issuer` for `issuer_ca`) is nearest, then one
//! a single edit away (a letter off or two swapped: `MGR` for `MRG`), and otherwise the
//! closest spelling by Jaro-Winkler similarity, which favours a shared start (`requred`,
//! `recieving_application`).

/// Below this Jaro-Winkler similarity (0 to 1) two names are unrelated.
const MIN_SIMILARITY: f64 = 0.85;
/// A name held whole inside another must be at least this long to count (`id` is in too
/// many names to mean anything).
const MIN_CONTAINED: usize = 4;

/// Lower case, without `_` and `-`.
fn folded(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// How near `candidate` is to `wanted`, higher is nearer; `None` when unrelated.
fn nearness(wanted: &str, candidate: &str) -> Option<f64> {
    if wanted.is_empty() || candidate.is_empty() {
        return None;
    }
    if wanted == candidate {
        return Some(3.0);
    }
    let (shorter, longer) = if wanted.len() <= candidate.len() {
        (wanted, candidate)
    } else {
        (candidate, wanted)
    };
    if shorter.chars().count() >= MIN_CONTAINED && longer.contains(shorter) {
        // The more of the longer name it covers, the nearer.
        return Some(2.0 + shorter.len() as f64 / longer.len() as f64);
    }
    let similarity = strsim::jaro_winkler(wanted, candidate);
    if shorter.chars().count() >= 3 && strsim::osa_distance(wanted, candidate) == 1 {
        // One letter off or two swapped: too short a name for Jaro-Winkler to see it
        // (`PXD` for `PID`, `MGR` for `MRG`).
        return Some(1.5 + similarity / 10.0);
    }
    (similarity >= MIN_SIMILARITY).then_some(similarity)
}

/// The candidate nearest to `name`, when one is near enough to be what was meant; the first
/// of equally near ones. `name` itself is never suggested.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = folded(name);
    let mut best: Option<(f64, &'a str)> = None;
    for candidate in candidates {
        if candidate == name {
            continue;
        }
        if let Some(score) = nearness(&wanted, &folded(candidate))
            && best.is_none_or(|(b, _)| score > b)
        {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    const TOP: &[&str] = &[
        "customer",
        "domain",
        "hl7_version",
        "model",
        "environments",
        "tables",
        "records",
        "inbound",
        "outbound",
        "tests",
    ];
    const FIELD: &[&str] = &[
        "from",
        "record",
        "type",
        "required",
        "repeated",
        "max_len",
        "map",
        "table",
        "media",
        "max_bytes",
    ];
    const TLS: &[&str] = &["cert", "key", "client_ca", "issuer_ca"];

    #[test]
    fn misspellings_case_and_partial_names_find_the_key_meant() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("hl7version", TOP, "hl7_version"),
            ("version", TOP, "hl7_version"),
            ("HL7_VERSION", TOP, "hl7_version"),
            ("hl7-version", TOP, "hl7_version"),
            ("hl7_ver", TOP, "hl7_version"),
            ("enviroments", TOP, "environments"),
            ("test", TOP, "tests"),
            ("requred", FIELD, "required"),
            ("form", FIELD, "from"),
            ("maxlen", FIELD, "max_len"),
            ("max_length", FIELD, "max_len"),
            ("issuer", TLS, "issuer_ca"),
            ("clientca", TLS, "client_ca"),
        ];
        for (name, allowed, meant) in cases {
            assert_eq!(
                closest(name, allowed.iter().copied()),
                Some(*meant),
                "{name}"
            );
        }
    }

    #[test]
    fn unrelated_names_get_no_suggestion() {
        for name in ["zzz", "colour", "priority", "x", ""] {
            assert_eq!(closest(name, TOP.iter().copied()), None, "{name}");
        }
        assert_eq!(closest("id", FIELD.iter().copied()), None);
    }
}
