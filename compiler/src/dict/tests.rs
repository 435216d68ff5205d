use super::*;

fn v(name: &str) -> &'static VersionDict {
    match load(name) {
        Ok(dict) => dict,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_embedded_version_parses() {
    for name in versions() {
        let dict = v(name);
        assert_eq!(dict.version(), name);
        assert!(dict.segment("MSH").is_some(), "v{name} has MSH");
        assert!(dict.structure("ACK").is_some(), "v{name} has ACK");
    }
}

#[test]
fn versions_cover_2_3_to_2_5_1_and_match_the_index() {
    let all = versions();
    for needed in ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"] {
        assert!(all.contains(&needed), "{needed} missing");
    }
    let index: serde_json::Value = serde_json::from_str(INDEX).unwrap();
    let listed: Vec<&str> = index["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(listed, all);
    assert_eq!(index["source"]["package"], "hl7apy");
}

#[test]
fn every_reference_in_the_data_resolves() {
    for name in versions() {
        let dict = v(name);
        for seg in dict.segments.values() {
            for (i, f) in seg.fields.iter().enumerate() {
                assert_eq!(f.position, i + 1);
                assert!(
                    !f.has_datatype() || dict.datatype(&f.datatype).is_some(),
                    "v{name} {}-{} has undefined datatype {}",
                    seg.id,
                    f.position,
                    f.datatype
                );
            }
        }
        for dt in dict.datatypes.values() {
            for c in &dt.components {
                assert!(
                    c.datatype == NO_DATATYPE || dict.datatype(&c.datatype).is_some(),
                    "v{name} {}.{} has undefined datatype {}",
                    dt.name,
                    c.position,
                    c.datatype
                );
            }
        }
        for st in dict.structures.values() {
            for seg in &st.segments {
                assert!(dict.segment(seg).is_some(), "v{name} {} has {seg}", st.id);
            }
        }
        for (code, by_trigger) in &dict.events {
            for (trigger, id) in by_trigger {
                assert!(
                    dict.structure(id).is_some(),
                    "v{name} {code}^{trigger} -> missing {id}"
                );
            }
        }
    }
}

#[test]
fn unknown_version_is_an_error_value() {
    assert!(version("2.9.9").is_none());
    let err = load("2.9.9").unwrap_err();
    assert!(err.to_string().contains("\"2.9.9\""), "{err}");
    assert!(err.to_string().contains("2.5.1"), "{err}");
}

#[test]
fn corrupt_data_is_an_error_value() {
    let err = raw::parse("2.4", "{not json").unwrap_err();
    assert!(matches!(err, DictError::Corrupt { version: "2.4", .. }));
    let v25 = EMBEDDED[5].1;
    let err = raw::parse("2.4", v25).unwrap_err();
    assert!(err.to_string().contains("says it is v2.5"), "{err}");
}

#[test]
fn pid_3_is_cx_and_cx_5_is_id() {
    for name in ["2.4", "2.5", "2.5.1"] {
        let dict = v(name);
        assert_eq!(dict.component_datatype("PID", 3, None, None), Ok("CX"));
        assert_eq!(dict.component_datatype("PID", 3, Some(5), None), Ok("ID"));
        assert_eq!(dict.component_datatype("PID", 3, Some(1), None), Ok("ST"));
        assert_eq!(dict.component_datatype("PID", 3, Some(4), None), Ok("HD"));
        assert_eq!(
            dict.component_datatype("PID", 3, Some(4), Some(1)),
            Ok("IS")
        );
        let pid3 = dict.segment("PID").and_then(|s| s.field(3)).unwrap();
        assert!(pid3.repeating && pid3.required && pid3.max_repetitions.is_none());
        assert_eq!(pid3.name, "PATIENT_IDENTIFIER_LIST");
    }
    // In v2.3 the identifier type code was still IS.
    assert_eq!(
        v("2.3").component_datatype("PID", 3, Some(5), None),
        Ok("IS")
    );
}

#[test]
fn pid_7_is_ts_and_ts_1_is_dtm_from_2_5() {
    assert_eq!(v("2.4").component_datatype("PID", 7, None, None), Ok("TS"));
    assert_eq!(v("2.5").component_datatype("PID", 7, None, None), Ok("TS"));
    assert_eq!(
        v("2.5").component_datatype("PID", 7, Some(1), None),
        Ok("DTM")
    );
    assert_eq!(
        v("2.8.2").component_datatype("PID", 7, None, None),
        Ok("DTM")
    );
}

#[test]
fn msh_1_is_the_field_separator() {
    let msh = v("2.5").segment("MSH").unwrap();
    assert_eq!(msh.field(1).unwrap().name, "FIELD_SEPARATOR");
    assert_eq!(msh.field(2).unwrap().name, "ENCODING_CHARACTERS");
    assert_eq!(msh.field(9).unwrap().datatype, "MSG");
    assert!(msh.field(0).is_none());
}

#[test]
fn obx_5_varies_and_any_component_of_it_varies() {
    for name in versions() {
        let dict = v(name);
        assert_eq!(
            dict.component_datatype("OBX", 5, None, None),
            Ok(VARIES),
            "v{name}"
        );
        assert_eq!(
            dict.component_datatype("OBX", 5, Some(5), Some(2)),
            Ok(VARIES)
        );
    }
}

#[test]
fn a_primitive_has_itself_as_component_1() {
    let dict = v("2.4");
    assert_eq!(dict.component_datatype("PID", 8, None, None), Ok("IS"));
    assert_eq!(dict.component_datatype("PID", 8, Some(1), None), Ok("IS"));
    assert_eq!(
        dict.component_datatype("PID", 8, Some(1), Some(1)),
        Ok("IS")
    );
    let err = dict
        .component_datatype("PID", 8, Some(2), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "PID-8 (IS) is a primitive in v2.4: it has no components; component 2 does not exist"
    );
}

#[test]
fn bogus_paths_say_which_level_does_not_exist() {
    let dict = v("2.4");
    let err = dict.component_datatype("ZZZ", 1, None, None).unwrap_err();
    assert_eq!(err.to_string(), "segment ZZZ is not defined in HL7 v2.4");

    let err = dict.component_datatype("PID", 45, None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "PID has 38 fields in v2.4; field 45 does not exist"
    );

    let err = dict
        .component_datatype("PID", 3, Some(12), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "PID-3 (CX) has 8 components in v2.4; component 12 does not exist"
    );
    let err = v("2.5")
        .component_datatype("PID", 3, Some(12), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "PID-3 (CX) has 10 components in v2.5; component 12 does not exist"
    );

    let err = dict
        .component_datatype("PID", 3, Some(4), Some(5))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "PID-3.4 (HD) has 3 subcomponents in v2.4; subcomponent 5 does not exist"
    );

    let err = dict
        .component_datatype("PID", 3, Some(5), Some(2))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "PID-3.5 (ID) is a primitive in v2.4: it has no subcomponents; subcomponent 2 does not exist"
    );

    let err = dict.component_datatype("PID", 0, None, None).unwrap_err();
    assert_eq!(err.to_string(), "PID-0: field positions count from 1");
    let err = dict
        .component_datatype("PID", 3, Some(0), None)
        .unwrap_err();
    assert_eq!(err.to_string(), "PID-3.0: component positions count from 1");
    let err = dict
        .component_datatype("PID", 3, None, Some(1))
        .unwrap_err();
    assert!(matches!(
        err,
        LookupError::SubcomponentWithoutComponent { .. }
    ));
}

#[test]
fn withdrawn_fields_have_no_datatype() {
    // hl7apy leaves PID-28 (nationality, withdrawn) out of v2.8.
    let dict = v("2.8");
    let pid28 = dict.segment("PID").and_then(|s| s.field(28)).unwrap();
    assert!(!pid28.has_datatype());
    let err = dict.component_datatype("PID", 28, None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "PID-28 has no datatype in v2.8: it is withdrawn or reserved"
    );
    assert_eq!(dict.component_datatype("PID", 29, None, None), Ok("DTM"));
}

#[test]
fn adt_a28_uses_adt_a05_from_2_4_and_adt_a01_before() {
    for name in ["2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8.2"] {
        assert_eq!(
            v(name).structure_for("ADT", "A28"),
            Some("ADT_A05"),
            "v{name}"
        );
        assert_eq!(
            v(name).structure_for("ADT", "A31"),
            Some("ADT_A05"),
            "v{name}"
        );
        assert_eq!(
            v(name).structure_for("ADT", "A40"),
            Some("ADT_A39"),
            "v{name}"
        );
        assert_eq!(
            v(name).structure_for("ADT", "A08"),
            Some("ADT_A01"),
            "v{name}"
        );
    }
    for name in ["2.3", "2.3.1"] {
        assert_eq!(
            v(name).structure_for("ADT", "A28"),
            Some("ADT_A01"),
            "v{name}"
        );
        assert_eq!(
            v(name).structure_for("ADT", "A40"),
            Some("ADT_A39"),
            "v{name}"
        );
    }
    // v2.1 and v2.2 have one structure per event.
    assert_eq!(v("2.2").structure_for("ADT", "A28"), Some("ADT_A28"));
    assert_eq!(v("2.2").structure_for("ADT", "A04"), Some("ADT_A04"));
    // Where a per-event copy exists in hl7apy, the shared structure still wins.
    assert_eq!(v("2.5").structure_for("SIU", "S14"), Some("SIU_S12"));
    // A44 got its own structure in v2.7.
    assert_eq!(v("2.5").structure_for("ADT", "A44"), Some("ADT_A43"));
    assert_eq!(v("2.7").structure_for("ADT", "A44"), Some("ADT_A44"));
    let a05 = v("2.4").structure("ADT_A05").unwrap();
    assert!(a05.may_contain("PID") && a05.may_contain("PV1") && !a05.may_contain("OBR"));
    assert!(
        matches!(&a05.tree[0], StructureNode::Segment { id, min: 1, max: Some(1) } if id == "MSH")
    );
}

#[test]
fn the_messaging_models_message_types_exist_where_hl7_defines_them() {
    for name in ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"] {
        let dict = v(name);
        for (code, trigger, structure) in [
            ("ORM", "O01", "ORM_O01"),
            ("ORR", "O02", "ORR_O02"),
            ("ORU", "R01", "ORU_R01"),
            ("SIU", "S12", "SIU_S12"),
            ("REF", "I12", "REF_I12"),
            ("RRI", "I12", "RRI_I12"),
        ] {
            assert_eq!(
                dict.structure_for(code, trigger),
                Some(structure),
                "{code}^{trigger} in v{name}"
            );
            assert!(dict.message_type_exists(code, trigger));
        }
        for (code, trigger) in [("ADT", "A28"), ("ADT", "A31"), ("ADT", "A40")] {
            assert!(
                dict.message_type_exists(code, trigger),
                "{code}^{trigger} v{name}"
            );
        }
    }
    for name in ["2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8.2"] {
        assert_eq!(
            v(name).structure_for("OMG", "O19"),
            Some("OMG_O19"),
            "v{name}"
        );
        assert_eq!(
            v(name).structure_for("ORG", "O20"),
            Some("ORG_O20"),
            "v{name}"
        );
    }
    for name in ["2.3", "2.3.1"] {
        assert!(!v(name).message_type_exists("OMG", "O19"), "v{name}");
    }
    // ORM and ORR are gone from v2.7 on.
    assert!(!v("2.7").message_type_exists("ORM", "O01"));
    assert!(!v("2.8.2").message_type_exists("ORR", "O02"));
}

#[test]
fn ack_takes_any_known_trigger_and_unknown_pairs_do_not_exist() {
    let dict = v("2.4");
    assert_eq!(dict.structure_for("ACK", "A01"), Some("ACK"));
    assert_eq!(dict.structure_for("ACK", "R01"), Some("ACK"));
    assert_eq!(dict.structure_for("ACK", ""), Some("ACK"));
    assert_eq!(dict.structure_for("ACK", "ZZZ"), None);
    assert_eq!(v("2.3").structure_for("ACK", "A01"), Some("ACK"));
    assert!(!dict.message_type_exists("ADT", "R01"));
    assert!(!dict.message_type_exists("XYZ", "A01"));
    assert!(!dict.message_type_exists("ADT", "A99"));
}

#[test]
fn message_type_tables_come_along_from_2_3_1() {
    assert!(v("2.3").table("0076").is_none());
    for name in ["2.3.1", "2.4", "2.5", "2.5.1"] {
        let dict = v(name);
        let t76 = dict.table("0076").unwrap();
        assert_eq!(t76.description, "Message type");
        assert!(t76.contains("ADT") && t76.contains("ORU") && !t76.contains("XYZ"));
        assert!(dict.table("0003").unwrap().contains("A28"));
        assert!(dict.table("0354").unwrap().contains("ORU_R01"));
    }
}
