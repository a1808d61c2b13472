//! The streamer against scripted firmware behaviour: the Virtual Printer's (every line
//! answered, in order), Marlin's (flushes after a bad line), ADVANCED_OK, and a model
//! firmware run over thousands of lines with random corruption that must accept every line
//! exactly once.

use super::*;
use crate::serial::framing::parse_framed;

fn window(lines: usize, bytes: usize) -> Window {
    Window {
        max_lines: lines,
        rx_bytes: bytes,
        advanced_ok: true,
    }
}

/// Sends new lines `cmd<i>` while the window allows; returns the numbers sent.
fn fill(s: &mut Streamer, next: &mut u32) -> Vec<u64> {
    let mut sent = vec![];
    loop {
        if let Some((n, _)) = s.poll_resend() {
            sent.push(n);
            continue;
        }
        let cmd = format!("G1 X{next}");
        if !s.can_send(&cmd) {
            return sent;
        }
        sent.push(s.push(&cmd).0);
        *next += 1;
    }
}

#[test]
fn frames_consecutive_numbers_and_acknowledges_in_order() {
    let mut s = Streamer::new(window(3, 120));
    let (n, framed) = s.push("M105");
    assert_eq!((n, framed), (1, "N1 M105*38\n"));
    assert_eq!(s.push("M114").1, "N2 M114*37\n");
    assert_eq!(s.command_of(2), Some("M114"));
    assert_eq!(s.on_ok(None, None), Ack::Line(1));
    assert_eq!(s.on_ok(None, None), Ack::Line(2));
    assert_eq!(s.acked(), 2);
    assert_eq!(
        s.on_ok(None, None),
        Ack::Unsolicited,
        "an ok for nothing in flight"
    );
    assert!(s.is_idle());
    s.reset(41);
    assert_eq!(s.push("G28").0, 42, "after M110 N41 the next line is 42");
}

#[test]
fn ping_pong_keeps_exactly_one_line_in_flight() {
    let mut s = Streamer::new(window(1, 120));
    let mut next = 0;
    assert_eq!(fill(&mut s, &mut next), vec![1]);
    assert_eq!(fill(&mut s, &mut next), Vec::<u64>::new());
    s.on_ok(None, None);
    assert_eq!(fill(&mut s, &mut next), vec![2]);
}

#[test]
fn send_ahead_counts_bytes_against_the_receive_buffer() {
    // "N1 G1 X0*cs\n" is 13 bytes or so: 3 lines fit in 40 bytes, a fourth does not, even
    // though 4 lines would be allowed.
    let mut s = Streamer::new(window(4, 40));
    let mut next = 0;
    assert_eq!(fill(&mut s, &mut next), vec![1, 2, 3]);
    s.on_ok(None, None);
    assert_eq!(fill(&mut s, &mut next), vec![4]);
    // One long line always goes when nothing is in flight, even over the budget.
    let mut s = Streamer::new(window(4, 10));
    assert!(s.can_send("M117 a long message that is longer than the budget"));
    s.push("M117 a long message that is longer than the budget");
    assert!(!s.can_send("G1"));
}

#[test]
fn window_from_a_profile_and_the_config_override() {
    let marlin = crate::serial::builtin()
        .into_iter()
        .find(|p| p.name == "marlin2")
        .expect("marlin2");
    let w = Window::from_profile(&marlin.buffers, None);
    assert_eq!((w.max_lines, w.rx_bytes), (3, 120));
    assert_eq!(Window::from_profile(&marlin.buffers, Some(1)).max_lines, 1);
    assert_eq!(
        Window::from_profile(&marlin.buffers, Some(99)).max_lines,
        3,
        "never beyond the profile's maximum"
    );
}

#[test]
fn advanced_ok_free_slots_limit_the_window() {
    let mut s = Streamer::new(window(3, 1000));
    let mut next = 0;
    assert_eq!(fill(&mut s, &mut next), vec![1, 2, 3]);
    // After line 1 the firmware has 1 free slot; lines 2 and 3 are newer than that report,
    // so nothing more may go.
    assert_eq!(s.on_ok(Some(1), Some(1)), Ack::Line(1));
    assert_eq!(fill(&mut s, &mut next), Vec::<u64>::new());
    // After line 2: 2 free slots, line 3 is newer: one more line.
    s.on_ok(Some(2), Some(2));
    assert_eq!(fill(&mut s, &mut next), vec![4]);
    // Without ADVANCED_OK in the profile the B field is ignored.
    let mut s = Streamer::new(Window {
        advanced_ok: false,
        ..window(3, 1000)
    });
    let mut next = 0;
    fill(&mut s, &mut next);
    s.on_ok(Some(1), Some(0));
    assert_eq!(fill(&mut s, &mut next), vec![4]);
}

#[test]
fn virtual_printer_resend_rewinds_to_exactly_the_requested_line() {
    // Lines 1..3 in flight; line 2 arrives corrupted. The Virtual Printer answers every
    // line, in order: ok(1), Resend:2 + ok (for 2), Resend:2 + ok (for 3, out of order).
    let mut s = Streamer::new(window(3, 1000));
    let mut next = 0;
    assert_eq!(fill(&mut s, &mut next), vec![1, 2, 3]);
    assert_eq!(s.on_ok(None, None), Ack::Line(1));
    assert_eq!(s.on_resend(2), Resend::Rewind(2));
    assert!(s.resending());
    // Lines 2 and 3 still hold their slots; the free one takes the M110 that re-synchronises
    // the printer's counters (they drift on every out-of-order line it refuses).
    let (n, framed) = s.poll_resend().expect("resync");
    assert_eq!((n, framed), (1, "N1 M110 N1*125\n"));
    assert_eq!(
        fill(&mut s, &mut next),
        Vec::<u64>::new(),
        "nothing new before the resend"
    );
    assert_eq!(s.on_ok(None, None), Ack::Rejected(2));
    assert_eq!(fill(&mut s, &mut next), vec![2]);
    assert_eq!(s.on_resend(2), Resend::Duplicate, "the echo for line 3");
    assert_eq!(s.on_ok(None, None), Ack::Rejected(3));
    assert_eq!(fill(&mut s, &mut next), vec![3]);
    assert_eq!(s.on_ok(None, None), Ack::Resync);
    assert_eq!(s.on_ok(None, None), Ack::Line(2));
    assert_eq!(s.on_ok(None, None), Ack::Line(3));
    assert_eq!(
        fill(&mut s, &mut next),
        vec![4, 5, 6],
        "then new lines again"
    );
    let st = s.stats();
    assert_eq!(
        (st.rewinds, st.resent, st.resyncs, st.ignored_resends),
        (1, 2, 1, 1)
    );
}

#[test]
fn marlin_flush_drops_unanswered_rejected_lines_after_quiet() {
    // Marlin: line 2 bad → Error, Resend: 2, ok; line 3 was flushed and is never answered.
    let mut s = Streamer::new(window(3, 1000));
    let mut next = 0;
    fill(&mut s, &mut next);
    assert_eq!(s.on_resend(2), Resend::Rewind(2));
    // The ok of line 1 may come after the resend request: it is still line 1's.
    assert_eq!(s.on_ok(None, None), Ack::Line(1));
    assert_eq!(s.on_ok(None, None), Ack::Rejected(2));
    assert!(s.has_rejected());
    assert_eq!(s.on_quiet(), 1, "line 3 was flushed");
    assert!(!s.has_rejected());
    assert_eq!(
        fill(&mut s, &mut next),
        vec![1, 2, 3],
        "M110 N1, then 2 and 3 again"
    );
}

#[test]
fn requests_ahead_of_the_stream_or_too_old_are_not_obeyed() {
    let mut s = Streamer::new(window(3, 1000));
    s.push("G1 X1");
    assert_eq!(s.on_resend(2), Resend::Ahead, "line 2 was never sent");
    assert_eq!(s.on_resend(9), Resend::Ahead);
    assert!(!s.resending());
    for _ in 0..(HISTORY + 10) {
        s.on_ok(None, None);
        s.push("G1 X1");
    }
    assert_eq!(s.on_resend(1), Resend::Unavailable(1));
    // A recent acknowledged line can be asked for again (a late request).
    let recent = s.acked();
    assert_eq!(s.on_resend(recent), Resend::Rewind(recent));
}

/// A model firmware with Marlin's rules: numbered lines must come in order with a good
/// checksum; a bad one is answered `Resend` (+ `ok`, like the Virtual Printer); lines after it
/// are refused as out of order. Lines are corrupted at random on the wire.
#[test]
fn thousands_of_lines_through_random_corruption_arrive_once_each_in_order() {
    for (max_lines, seed) in [(1usize, 7u64), (3, 11), (4, 12345)] {
        let mut s = Streamer::new(window(max_lines, 200));
        let mut rng = seed;
        let mut rand = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut expected, mut executed) = (1u64, Vec::<String>::new());
        let mut wire: std::collections::VecDeque<String> = Default::default();
        let mut replies: std::collections::VecDeque<Option<u64>> = Default::default();
        let mut next = 0u32;
        let total = 3000;
        let mut steps = 0;
        while executed.len() < total {
            steps += 1;
            assert!(steps < 100_000, "no progress (window {max_lines})");
            // Host: resend or send what fits (but no more than `total` commands).
            loop {
                if let Some((_, f)) = s.poll_resend() {
                    wire.push_back(f.to_string());
                    continue;
                }
                let cmd = format!("G1 X{next}");
                if next as usize >= total || !s.can_send(&cmd) {
                    break;
                }
                let (_, f) = s.push(&cmd);
                wire.push_back(f.to_string());
                next += 1;
            }
            // Firmware: one line, perhaps corrupted (1 in 20).
            if let Some(mut line) = wire.pop_front() {
                if rand() % 20 == 0 {
                    line = line.replacen("G1", "F1", 1);
                }
                match parse_framed(&line).filter(|f| f.is_valid()) {
                    Some(f) if f.command.starts_with("M110") => {
                        expected = f.number + 1;
                        replies.push_back(None);
                    }
                    Some(f) if f.number == expected => {
                        executed.push(f.command.to_string());
                        expected += 1;
                        replies.push_back(None);
                    }
                    _ => replies.push_back(Some(expected)),
                }
            }
            // Host: the replies, in order.
            while let Some(r) = replies.pop_front() {
                if let Some(n) = r {
                    s.on_resend(n);
                }
                s.on_ok(None, None);
            }
        }
        let want: Vec<String> = (0..total).map(|i| format!("G1 X{i}")).collect();
        assert_eq!(executed, want, "window {max_lines}");
        assert!(s.stats().rewinds > 50, "corruption was exercised");
    }
}

#[test]
fn the_same_line_failing_again_and_again_falls_back_to_ping_pong_then_gives_up() {
    let mut s = Streamer::new(window(3, 1000));
    let mut next = 0;
    fill(&mut s, &mut next);
    for round in 1..=GIVE_UP_AFTER {
        assert_eq!(s.on_resend(1), Resend::Rewind(1));
        while s.in_flight() > 0 {
            s.on_ok(None, None);
        }
        assert_eq!(
            s.window().max_lines == 1,
            round >= PING_PONG_AFTER,
            "round {round}"
        );
        fill(&mut s, &mut next);
    }
    assert_eq!(s.resend_loop(), Some((1, GIVE_UP_AFTER)));
    assert!(s.stats().fell_back_to_ping_pong);
    // Getting past the line ends the loop.
    let mut s = Streamer::new(window(3, 1000));
    fill(&mut s, &mut next);
    s.on_resend(1);
    s.on_ok(None, None);
    s.on_ok(None, None);
    s.on_ok(None, None);
    fill(&mut s, &mut next);
    assert_eq!(s.on_ok(None, None), Ack::Resync);
    assert_eq!(s.on_ok(None, None), Ack::Line(1));
    assert_eq!(s.resend_loop(), None);
}
