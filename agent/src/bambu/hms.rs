//! HMS (health management system) entries and `print_error` codes as texts an operator can act
//! on (pure).
//!
//! Bambu publishes the message for each code on its wiki, not in the protocol; we know the
//! meaning of only a few codes (below, with sources), so every other code is shown in Bambu's
//! own notation with a pointer to the wiki's HMS page, where it can be looked up.
//!
//! Field layout (ha-bambulab pybambu `HMSList`, `get_HMS_severity`, `const.py`): the code
//! string is `attr>>16 _ attr&0xFFFF _ code>>16 _ code&0xFFFF` as 4 hex digits each; the
//! severity is `code >> 16` (1 fatal, 2 serious, 3 common, 4 info); the module is
//! `attr >> 24` (0x03 motion control, 0x05 mainboard, 0x07 AMS, 0x08 toolhead, 0x0C camera).

/// Where an operator looks up a code Bambu documents and we do not.
pub const HMS_WIKI: &str = "https://wiki.bambulab.com/en/hms/home";

/// `print_error` after a cancel from the screen, the app or our `stop` (pybambu
/// `PrintJob.print_update` takes it to mean "cancelled"); reset to 0 a few seconds later.
pub const CANCELLED: u32 = 0x0300_400C;

/// `err_code` in the reply to a control command that firmware with Authorization Control
/// refused because it was not signed (Developer Mode off); reported for `pause` in
/// coelacant1/Bambu-Lab-Cloud-API issue #4 (one report).
pub const UNSIGNED_REFUSED: u32 = 0x0502_4007;

/// What the operator must do when the printer refuses our commands.
pub const DEVELOPER_MODE_HINT: &str = "the printer refuses control commands from the farm (firmware with Bambu's Authorization Control): on the printer's screen switch on \"LAN Only Mode\" and then \"Developer Mode\" in the network settings, then retry; status keeps working without them";

/// One entry of `print.hms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hms {
    pub attr: u32,
    pub code: u32,
}

impl Hms {
    /// Bambu's notation, e.g. `0C00_0300_0003_0007`.
    pub fn code_string(&self) -> String {
        format!(
            "{:04X}_{:04X}_{:04X}_{:04X}",
            self.attr >> 16,
            self.attr & 0xFFFF,
            self.code >> 16,
            self.code & 0xFFFF
        )
    }

    pub fn severity(&self) -> &'static str {
        match self.code >> 16 {
            1 => "fatal",
            2 => "serious",
            3 => "common",
            4 => "info",
            _ => "unknown",
        }
    }

    pub fn module(&self) -> &'static str {
        match self.attr >> 24 {
            0x03 => "motion control",
            0x05 => "mainboard",
            0x07 => "AMS",
            0x08 => "toolhead",
            0x0C => "camera",
            _ => "printer",
        }
    }

    /// A fatal entry stops the printer until someone clears it.
    pub fn is_fatal(&self) -> bool {
        self.code >> 16 == 1
    }

    /// `HMS 0C00_0300_0003_0007 (common, camera): look the code up at <wiki>`.
    pub fn text(&self) -> String {
        format!(
            "HMS {} ({}, {}): look the code up at {HMS_WIKI} and clear it on the printer's screen",
            self.code_string(),
            self.severity(),
            self.module()
        )
    }
}

/// A `print_error` as text: the codes we know by meaning, else Bambu's `XXXX_YYYY` notation
/// with the wiki pointer.
pub fn print_error_text(code: u32) -> String {
    let hex = format!("{:04X}_{:04X}", code >> 16, code & 0xFFFF);
    match code {
        CANCELLED => format!("print_error {hex}: the print was cancelled"),
        UNSIGNED_REFUSED => format!("print_error {hex}: {DEVELOPER_MODE_HINT}"),
        _ => format!(
            "print_error {hex}: look the code up at {HMS_WIKI} and check the printer's screen"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_bambu_writes_them() {
        // MOCK-MISC.json's entry.
        let h = Hms {
            attr: 201_327_360,
            code: 196_615,
        };
        assert_eq!(h.code_string(), "0C00_0300_0003_0007");
        assert_eq!((h.severity(), h.module()), ("common", "camera"));
        assert!(!h.is_fatal());
        assert!(h.text().contains(HMS_WIKI));
        // pybambu's example: 50348044 is the user cancel.
        assert_eq!(50_348_044, CANCELLED);
        assert!(print_error_text(50_348_044).contains("0300_400C"));
        assert!(print_error_text(84_033_543).contains("Developer Mode"));
        assert!(print_error_text(0x0700_8011).contains("0700_8011"));
    }
}
