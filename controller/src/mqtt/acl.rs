//! Who may do what on the embedded broker: pure rules, applied by [`crate::mqtt::broker`]'s
//! hooks.
//!
//! A printer logs in as itself (client id = username = printer id, password = its token) and
//! may publish only on its own agent channels (`status`, `events`, `online` under its own
//! `<root>/v1/printers/<id>/`), its last will included, and subscribe only to its own
//! `commands` and `acks`. So a printer with valid credentials can neither speak for another
//! (the controller also checks every signature), nor read the farm's traffic (`farm/#`), nor
//! clear another printer's retained status. The controller's own logins (its link and the
//! probe) are unrestricted.

use farm_protocol::{Channel, Topics};

/// Who a login is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who<'a> {
    /// The controller's link or the broker probe: anything goes.
    Controller,
    /// A printer, by its id (its username).
    Printer(&'a str),
}

/// Why a login is refused before its token is even looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// The client id is not the username: one printer could take over another's session.
    ClientId,
    /// The last will names a topic the printer may not publish on.
    Will,
}

/// The shape of a printer's login: client id = username, and a will (if any) on its own
/// agent channels. The token itself is the farm's to check.
pub fn decide_printer_login(
    topics: &Topics,
    client_id: &str,
    username: &str,
    will_topic: Option<&str>,
) -> Result<(), LoginRefused> {
    if client_id != username {
        return Err(LoginRefused::ClientId);
    }
    match will_topic {
        Some(t) if !may_publish(topics, Who::Printer(username), t) => Err(LoginRefused::Will),
        _ => Ok(()),
    }
}

/// May `who` publish on `topic`?
pub fn may_publish(topics: &Topics, who: Who<'_>, topic: &str) -> bool {
    match who {
        Who::Controller => true,
        Who::Printer(me) => topics
            .parse(topic)
            .is_some_and(|(p, ch)| p.as_str() == me && ch.from_agent()),
    }
}

/// May `who` subscribe to `filter`? A printer: exactly its own `commands` or `acks` (a
/// wildcard parses as no printer, so it is refused).
pub fn may_subscribe(topics: &Topics, who: Who<'_>, filter: &str) -> bool {
    match who {
        Who::Controller => true,
        Who::Printer(me) => topics.parse(filter).is_some_and(|(p, ch)| {
            p.as_str() == me && matches!(ch, Channel::Commands | Channel::Acks)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Topics {
        Topics::default()
    }

    #[test]
    fn a_printer_publishes_only_on_its_own_agent_channels() {
        let me = Who::Printer("p-1");
        for ch in ["status", "events", "online"] {
            assert!(may_publish(&t(), me, &format!("farm/v1/printers/p-1/{ch}")));
            assert!(!may_publish(
                &t(),
                me,
                &format!("farm/v1/printers/p-2/{ch}")
            ));
        }
        for topic in [
            "farm/v1/printers/p-1/commands",
            "farm/v1/printers/p-1/acks",
            "farm/v1/printers/p-1/status/x",
            "farm/v1/printers/+/status",
            "farm/v1/printers/p-10/status",
            "elsewhere/v1/printers/p-1/status",
            "$SYS/x",
            "farm/#",
        ] {
            assert!(!may_publish(&t(), me, topic), "{topic}");
        }
        assert!(may_publish(
            &t(),
            Who::Controller,
            "farm/v1/printers/p-2/commands"
        ));
    }

    #[test]
    fn a_printer_subscribes_only_to_its_own_commands_and_acks() {
        let me = Who::Printer("p-1");
        assert!(may_subscribe(&t(), me, "farm/v1/printers/p-1/commands"));
        assert!(may_subscribe(&t(), me, "farm/v1/printers/p-1/acks"));
        for filter in [
            "farm/#",
            "#",
            "farm/v1/printers/+/commands",
            "farm/v1/printers/+/status",
            "farm/v1/printers/p-1/+",
            "farm/v1/printers/p-1/#",
            "farm/v1/printers/p-1/status",
            "farm/v1/printers/p-2/commands",
        ] {
            assert!(!may_subscribe(&t(), me, filter), "{filter}");
        }
        assert!(may_subscribe(
            &t(),
            Who::Controller,
            "farm/v1/printers/+/status"
        ));
    }

    #[test]
    fn a_login_is_its_own_client_id_and_wills_only_for_itself() {
        let online = "farm/v1/printers/p-1/online";
        assert_eq!(
            decide_printer_login(&t(), "p-1", "p-1", Some(online)),
            Ok(())
        );
        assert_eq!(decide_printer_login(&t(), "p-1", "p-1", None), Ok(()));
        assert_eq!(
            decide_printer_login(&t(), "p-2", "p-1", None),
            Err(LoginRefused::ClientId)
        );
        // A will that would clear p-2's retained status when p-1 drops.
        assert_eq!(
            decide_printer_login(&t(), "p-1", "p-1", Some("farm/v1/printers/p-2/status")),
            Err(LoginRefused::Will)
        );
    }
}
