//! Property tests: escape encode/decode are inverse, any message the builder writes parses
//! back to the same values (whatever the delimiters), serialize(parse(m)) == m, and paths
//! print back to themselves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hl7gw_runtime::hl7::{
    Charset, Delimiters, Encoding, Message, MessageBuilder, Path, RepetitionFilter,
    RepetitionSelector, SegmentFilter, SegmentSelector, escape,
};
use proptest::prelude::*;

/// Leaf text: mostly printable, sometimes with delimiters, CR/LF and other controls.
fn leaf(max_char: u32) -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        8 => (0x20u32..0x7F).prop_map(|c| char::from_u32(c).unwrap()),
        2 => (0xA0u32..=max_char).prop_filter_map("valid char", char::from_u32),
        1 => prop::sample::select(vec!['\r', '\n', '\t', '\u{1}', '\u{7F}']),
    ];
    prop::collection::vec(chars, 0..12).prop_map(|v| v.into_iter().collect())
}

fn delimiters() -> impl Strategy<Value = Delimiters> {
    let pool: Vec<u8> = b"|^~\\&#$%*!@+:;/?<>=_,'`{}".to_vec();
    (prop::sample::subsequence(pool, 6), any::<bool>()).prop_shuffle_pairs()
}

trait ShufflePairs {
    fn prop_shuffle_pairs(self) -> BoxedStrategy<Delimiters>;
}

impl<S: Strategy<Value = (Vec<u8>, bool)> + 'static> ShufflePairs for S {
    fn prop_shuffle_pairs(self) -> BoxedStrategy<Delimiters> {
        self.prop_flat_map(|(chars, truncation)| {
            Just(chars).prop_shuffle().prop_map(move |c| Delimiters {
                field: c[0],
                component: c[1],
                repetition: c[2],
                escape: c[3],
                subcomponent: c[4],
                truncation: truncation.then_some(c[5]),
            })
        })
        .boxed()
    }
}

type Tree = Vec<(String, Vec<Vec<Vec<Vec<String>>>>)>;

fn tree(max_char: u32) -> impl Strategy<Value = Tree> {
    let id = "[A-Z][A-Z0-9]{2}".prop_filter("not a header or envelope segment", |id| {
        !matches!(id.as_str(), "MSH" | "FHS" | "BHS" | "BTS" | "FTS")
    });
    let sub = leaf(max_char);
    let comp = prop::collection::vec(sub, 1..3);
    let rep = prop::collection::vec(comp, 1..4);
    let field = prop::collection::vec(rep, 1..3);
    let segment = (id, prop::collection::vec(field, 0..5));
    prop::collection::vec(segment, 1..5)
}

fn build(tree: &Tree, encoding: Encoding) -> Vec<u8> {
    let mut b = MessageBuilder::new(encoding);
    let msh = b.msh();
    msh.set(&encoding, 9, 1, 1, 1, "ADT").unwrap();
    msh.set(&encoding, 9, 1, 2, 1, "A01").unwrap();
    msh.set(&encoding, 10, 1, 1, 1, "CTRL").unwrap();
    msh.set(&encoding, 12, 1, 1, 1, "2.5").unwrap();
    if encoding.charset == Charset::Latin1 {
        msh.set(&encoding, 18, 1, 1, 1, "8859/1").unwrap();
    }
    for (id, fields) in tree {
        let seg = b.push_segment(id).unwrap();
        for (f, reps) in fields.iter().enumerate() {
            for (r, comps) in reps.iter().enumerate() {
                for (c, subs) in comps.iter().enumerate() {
                    for (s, text) in subs.iter().enumerate() {
                        seg.set(&encoding, f + 1, r + 1, c + 1, s + 1, text)
                            .unwrap();
                    }
                }
            }
        }
    }
    b.to_bytes()
}

fn read_back(message: &Message<'_>) -> Tree {
    message
        .segments()
        .skip(1)
        .map(|seg| {
            let fields = seg
                .fields()
                .map(|f| {
                    f.repetitions()
                        .map(|r| {
                            r.components()
                                .map(|c| {
                                    c.subcomponents()
                                        .map(|s| {
                                            let d = s.decode().unwrap();
                                            assert!(d.kept.is_empty(), "{:?}", d.kept);
                                            d.text.into_owned()
                                        })
                                        .collect()
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect();
            (seg.id().to_string(), fields)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn escape_decode_inverts_encode(text in leaf(0x10FFFF), d in delimiters()) {
        let encoded = escape::encode(&text, &d, Charset::Utf8).unwrap();
        for b in &encoded {
            prop_assert!(*b >= 0x20 && *b != 0x7F, "control byte left in {encoded:?}");
            prop_assert!(*b != d.field && *b != d.component && *b != d.repetition
                && *b != d.subcomponent && Some(*b) != d.truncation);
        }
        let decoded = escape::decode(&encoded, &d, Charset::Utf8).unwrap();
        prop_assert!(decoded.kept.is_empty());
        prop_assert_eq!(decoded.text, text);
    }

    #[test]
    fn built_messages_parse_back_to_their_values(t in tree(0x10FFFF), d in delimiters()) {
        let encoding = Encoding { delimiters: d, charset: Charset::Utf8 };
        let bytes = build(&t, encoding);
        let message = Message::parse(&bytes).unwrap();
        prop_assert_eq!(message.delimiters(), d);
        prop_assert_eq!(read_back(&message), t);
        prop_assert_eq!(MessageBuilder::from_message(&message).to_bytes(), bytes.clone());
        prop_assert_eq!(message.to_bytes(), bytes);
    }

    #[test]
    fn latin1_messages_round_trip(t in tree(0xFF), d in delimiters()) {
        let encoding = Encoding { delimiters: d, charset: Charset::Latin1 };
        let bytes = build(&t, encoding);
        let message = Message::parse(&bytes).unwrap();
        prop_assert_eq!(message.charset(), Charset::Latin1);
        prop_assert_eq!(read_back(&message), t);
    }

    #[test]
    fn paths_print_back_to_themselves(path in path()) {
        let text = path.to_string();
        let parsed = Path::parse(&text).unwrap();
        prop_assert_eq!(parsed, path);
    }

    #[test]
    fn path_parser_never_panics(text in "\\PC{0,24}") {
        let _ = Path::parse(&text);
    }

    #[test]
    fn parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut input = b"MSH|^~\\&|".to_vec();
        input.extend_from_slice(&bytes);
        if let Ok(m) = Message::parse(&input) {
            for seg in m.segments() {
                for f in seg.fields() {
                    let _ = f.decode();
                }
            }
        }
    }
}

fn index() -> impl Strategy<Value = usize> {
    1usize..30
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9]{1,6}", "\\PC{0,8}",]
}

fn path() -> impl Strategy<Value = Path> {
    let segment = "[A-Z][A-Z0-9]{2}";
    let seg_sel = prop_oneof![
        Just(None),
        index().prop_map(|n| Some(SegmentSelector::Occurrence(n))),
        (
            index(),
            prop::option::of(index()),
            prop::option::of(index()),
            value()
        )
            .prop_map(
                |(field, component, sub, value)| Some(SegmentSelector::Where(SegmentFilter {
                    field,
                    component,
                    subcomponent: component.and(sub),
                    value: value.into(),
                }))
            ),
    ];
    let rep_sel = prop_oneof![
        Just(None),
        index().prop_map(|n| Some(RepetitionSelector::Index(n))),
        (
            "[A-Z][A-Z0-9]{0,3}",
            index(),
            prop::option::of(index()),
            value()
        )
            .prop_map(|(datatype, component, subcomponent, value)| Some(
                RepetitionSelector::Where(RepetitionFilter {
                    datatype: datatype.into(),
                    component,
                    subcomponent,
                    value: value.into()
                })
            )),
    ];
    (
        segment,
        seg_sel,
        index(),
        rep_sel,
        prop::option::of(index()),
        prop::option::of(index()),
    )
        .prop_map(
            |(segment, segment_selector, field, repetition, component, sub)| Path {
                segment: segment.into(),
                segment_selector,
                field,
                repetition,
                component,
                subcomponent: component.and(sub),
            },
        )
}
