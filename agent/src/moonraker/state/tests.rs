use super::*;
use farm_protocol::messages::Activity as A;
use serde_json::json;

#[test]
fn klippy_words_map_to_states_and_back() {
    for w in ["ready", "startup", "shutdown", "error", "disconnected"] {
        assert_eq!(Klippy::parse(w).word(), w);
    }
    assert_eq!(Klippy::parse("something new"), Klippy::Disconnected);
}

#[test]
fn the_farm_state_rule() {
    let up = Link::Up;
    let down = Link::Down("no route".into());
    assert_eq!(
        activity(&down, Klippy::Ready, Some("printing")),
        A::Disconnected
    );
    assert_eq!(activity(&up, Klippy::Disconnected, None), A::Disconnected);
    assert_eq!(
        activity(&up, Klippy::Startup, Some("standby")),
        A::Disconnected
    );
    // A heater fault leaves print_stats `paused` (fixture d): shutdown wins.
    assert_eq!(activity(&up, Klippy::Shutdown, Some("paused")), A::Error);
    assert_eq!(activity(&up, Klippy::Error, None), A::Error);
    assert_eq!(activity(&up, Klippy::Ready, Some("printing")), A::Printing);
    assert_eq!(activity(&up, Klippy::Ready, Some("paused")), A::Paused);
    // The last job's result is not the printer's state.
    for last in ["standby", "complete", "cancelled", "error"] {
        assert_eq!(activity(&up, Klippy::Ready, Some(last)), A::Idle, "{last}");
    }
}

#[test]
fn messages_say_what_happened_and_what_to_do() {
    let shutdown =
        "Heater extruder not heating at expected rate\nSee the 'verify_heater' section\n";
    let m = state_message(&Link::Up, Klippy::Shutdown, shutdown).unwrap_or_default();
    assert!(
        m.contains("Heater extruder not heating at expected rate"),
        "{m}"
    );
    assert!(
        m.contains("FIRMWARE_RESTART") && !m.contains("verify_heater"),
        "{m}"
    );
    assert_eq!(state_message(&Link::Up, Klippy::Ready, ""), None);
    let m = state_message(&Link::Down("refused".into()), Klippy::Ready, "");
    assert_eq!(m.as_deref(), Some("refused"));
    assert_eq!(
        first_line("\n// Shutdown due to webhooks request\n// Once"),
        "Shutdown due to webhooks request"
    );
    assert_eq!(first_line("!! Move out of range"), "Move out of range");
}

#[test]
fn diffs_merge_field_by_field_and_a_changed_field_is_replaced_whole() {
    let mut o = Objects::default();
    o.replace(&json!({
        "print_stats": {"state": "standby", "filename": "", "info": {"total_layer": null, "current_layer": null}},
        "extruder": {"temperature": 25.0, "target": 0.0},
    }));
    o.merge(&json!({"print_stats": {"state": "printing", "info": {"total_layer": 2, "current_layer": 0}}}));
    o.merge(&json!({"extruder": {"target": 200.0}, "heater_bed": {"temperature": 30.0}}));
    assert_eq!(o.print_state(), Some("printing"));
    assert_eq!(o.str("print_stats", "filename"), Some(""));
    assert_eq!(
        o.get("print_stats", "info"),
        Some(&json!({"total_layer": 2, "current_layer": 0}))
    );
    assert_eq!(o.f64("extruder", "temperature"), Some(25.0));
    assert_eq!(o.f64("extruder", "target"), Some(200.0));
    o.replace(&json!({"print_stats": {"state": "standby"}}));
    assert_eq!(o.get("extruder", "target"), None, "replace starts over");
}

#[test]
fn heaters_are_named_as_the_farm_names_them() {
    let mut o = Objects::default();
    o.replace(&json!({
        "heater_bed": {"temperature": 60.2, "target": 60.0},
        "extruder1": {"temperature": 180.0, "target": 0.0},
        "extruder": {"temperature": 200.5, "target": 200.0},
        "extruder_stepper belt": {"temperature": 1.0},
        "webhooks": {"state": "ready"},
    }));
    let names: Vec<String> = o.heaters().into_iter().map(|h| h.name).collect();
    assert_eq!(names, ["tool0", "tool1", "bed"]);
    assert_eq!(o.heaters()[0].actual, 200.5);
    assert_eq!(tool_number("extruder12"), Some(12));
    assert_eq!(tool_number("extruder0"), None);
}

#[test]
fn the_subscription_asks_for_every_extruder_the_printer_lists() {
    // printer.objects.list of the captured printer (fixture a), plus a second extruder.
    let mut listed: Vec<String> = [
        "webhooks",
        "configfile",
        "mcu",
        "heaters",
        "heater_bed",
        "gcode_move",
        "print_stats",
        "virtual_sdcard",
        "pause_resume",
        "display_status",
        "toolhead",
        "extruder",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    listed.push("extruder1".into());
    let sub = subscription(&listed);
    let objects = sub["objects"].as_object().cloned().unwrap_or_default();
    for o in [
        "print_stats",
        "virtual_sdcard",
        "display_status",
        "webhooks",
        "toolhead",
        "heater_bed",
        "extruder",
        "extruder1",
        "pause_resume",
    ] {
        assert!(objects.contains_key(o), "{o} missing from {sub}");
    }
    assert!(
        sub["objects"]["virtual_sdcard"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("file_position")))
    );
    // Without a list (could not ask), the one extruder every printer has.
    assert!(subscription(&[])["objects"]["extruder"].is_array());
}
