//! Broker URLs: checking their shape, and keeping their passwords out of
//! logs and errors.
//!
//! AMQP URLs carry the password (`amqp://user:password@host/vhost`), and a
//! URL that does not parse is the one most likely to be printed: in an
//! error, a `Debug` output, an application's "cannot connect to ..." line.
//! So the redaction never relies on the URL being valid: everything between
//! the scheme and the **last** `@` is hidden, whatever lies between (an
//! unencoded `/`, `#`, `?`, `@` or space in a password moves the "authority"
//! of a URL parser, not this rule). Where the structure is in doubt, less is
//! shown:
//!
//! | the string | shown |
//! |---|---|
//! | `user:password@host...` after a scheme | `user:***@host...` when `user` is a plain user name; `***@host...` otherwise |
//! | `token@host...` (no `:` before the `@`) | `***@host...`: a lone user name may be a token |
//! | no recognisable scheme (`amqp//u:p@h`, `u:p@h`) | `***@h`: everything before the last `@` |
//! | no `@`, but `host:not-a-port...` | `host:***`: perhaps a password without its host |
//! | no `@`, `host[:port][/vhost]` | unchanged |

/// Replaces the password of an AMQP URL with `***`, so that URLs can be
/// logged and shown in errors (`amqps://app:***@mq.example.com:5671/prod`);
/// see the table above for malformed URLs. Applications see URLs redacted
/// in errors, in `Debug` output and through
/// [`Connection::url`](crate::Connection::url).
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = split_scheme(url);
    if let Some(at) = rest.rfind('@') {
        let userinfo = &rest[..at];
        let shown = match userinfo.split_once(':') {
            Some((user, _)) if !scheme.is_empty() && is_plain_user(user) => {
                format!("{user}:***")
            }
            _ => "***".to_owned(),
        };
        return format!("{scheme}{shown}{}", &rest[at..]);
    }
    // No userinfo: a `host:port` whose port is not a number may be a
    // `user:password` that lost its `@host`.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_end = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |end| end + 1)
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    match authority[host_end..].strip_prefix(':') {
        Some(port) if !port.bytes().all(|byte| byte.is_ascii_digit()) => {
            format!("{scheme}{}:***", &authority[..host_end])
        }
        // `[::1]junk`: not a port either.
        None if host_end < authority.len() => format!("{scheme}***"),
        _ => url.to_owned(),
    }
}

/// `("amqp://", rest)` when `url` starts with a well-formed scheme and
/// `://`; `("", url)` otherwise.
fn split_scheme(url: &str) -> (&str, &str) {
    let Some(end) = url.find("://") else {
        return ("", url);
    };
    let scheme = &url[..end];
    let well_formed = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if well_formed {
        url.split_at(end + 3)
    } else {
        ("", url)
    }
}

/// A user name as written in a well-formed URL: unreserved characters,
/// sub-delimiters and percent-escapes, nothing that would end or move the
/// authority.
fn is_plain_user(user: &str) -> bool {
    !user.is_empty()
        && user.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '-' | '.'
                        | '_'
                        | '~'
                        | '%'
                        | '!'
                        | '$'
                        | '&'
                        | '\''
                        | '('
                        | ')'
                        | '*'
                        | '+'
                        | ','
                        | ';'
                        | '='
                )
        })
}

/// Refuses a URL whose last `@` lies outside what a URL parser takes as
/// its authority, or that lacks `scheme://`: a password with an unencoded
/// `/`, `#` or `?`, or a mistyped `amqp:/`, would otherwise parse as a
/// different host, user or virtual host, and the broker's answer (`vhost
/// "user:password@host/" not found`) would quote the password. Refuses an
/// IPv6 address as host too: the URL parser both transports use
/// (`amq-protocol-uri`) reads it as no host, and connects to `localhost`
/// instead. Refuses a query parameter no connection reads
/// ([`QUERY_KEYS`]).
pub(crate) fn check_shape(url: &str) -> Result<(), String> {
    let (scheme, rest) = split_scheme(url);
    if scheme.is_empty() {
        return Err("it does not start with `amqp://` or `amqps://`".to_owned());
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest.rfind('@').is_some_and(|at| at > authority_end) {
        return Err(
            "an `@` follows a `/`, `#` or `?`: percent-encode those characters in the user \
             name and password (`/` is `%2F`, `#` is `%23`, `?` is `%3F`, `@` is `%40`)"
                .to_owned(),
        );
    }
    let authority = &rest[..authority_end];
    let host = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    if host.starts_with('[') {
        return Err(
            "its host is an IPv6 address, which the AMQP URL parser cannot read (it would \
             connect to `localhost`): use a host name that resolves to the address"
                .to_owned(),
        );
    }
    check_query(rest)
}

/// The query parameters of the AMQP URI specification that connections
/// read; the parser ignores any other, so a misspelled one would go unseen.
const QUERY_KEYS: [&str; 5] = [
    "heartbeat",
    "connection_timeout",
    "channel_max",
    "frame_max",
    "auth_mechanism",
];

/// Refuses a query parameter that no connection reads (`?heartbeat_interval=`,
/// `?Heartbeat=`, a TLS option of another client), which the URL parser
/// would ignore without a word.
fn check_query(rest: &str) -> Result<(), String> {
    let Some((_, query)) = rest.split_once('?') else {
        return Ok(());
    };
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        if !QUERY_KEYS.contains(&key) {
            let shown: String = key
                .chars()
                .take(40)
                .flat_map(char::escape_default)
                .collect();
            return Err(format!(
                "it has the query parameter `{shown}`, which no connection reads: the known \
                 ones are `heartbeat` (seconds), `connection_timeout` (milliseconds), \
                 `channel_max`, `frame_max` and `auth_mechanism`; TLS is set with \
                 `ConnectionBuilder::tls_ca_certificates`"
            ));
        }
    }
    Ok(())
}

/// What a URL parser said of `url`, without any part of the password: the
/// URL itself is replaced by its redacted form, and a message that would
/// still show any of the hidden part is replaced by a generic one.
pub(crate) fn parse_error_message(message: &str, url: &str) -> String {
    let redacted = redact_url(url);
    let message = message.replace(url, &redacted);
    let (scheme, rest) = split_scheme(url);
    let hidden = match rest.rfind('@') {
        // What `redact_url` hides: all of the userinfo, or its password.
        Some(at) => match rest[..at].split_once(':') {
            Some((user, password)) if !scheme.is_empty() && is_plain_user(user) => password,
            _ => &rest[..at],
        },
        None => rest.split_once(':').map_or("", |(_, port)| port),
    };
    let leaks = !hidden.is_empty()
        && hidden
            .split([':', '@', '/', '#', '?', ' '])
            .any(|part| part.len() >= 3 && message.contains(part));
    if leaks {
        "it does not parse as amqp://user:password@host:port/vhost (percent-encode `/`, `#`, \
         `?`, `@`, `:` and spaces in the user name and password)"
            .to_owned()
    } else {
        message
    }
}

/// A string of one URL, or several separated by commas, split: at each
/// comma that a scheme (`amqp://`, `amqps://`) follows, so that a comma in
/// a password (which need not be percent-encoded) does not split its URL.
/// Each URL is then redacted on its own.
pub(crate) fn split_urls(text: &str) -> Vec<String> {
    let starts_url = |rest: &str| {
        let rest = rest.trim_start().as_bytes();
        [&b"amqp://"[..], b"amqps://"].iter().any(|scheme| {
            rest.len() >= scheme.len() && rest[..scheme.len()].eq_ignore_ascii_case(scheme)
        })
    };
    let mut urls = Vec::new();
    let mut start = 0;
    for (at, _) in text.match_indices(',') {
        if starts_url(&text[at + 1..]) {
            urls.push(&text[start..at]);
            start = at + 1;
        }
    }
    urls.push(&text[start..]);
    urls.into_iter()
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{check_shape, parse_error_message, redact_url, split_urls};

    #[test]
    fn address_lists_split_where_a_url_starts() {
        assert_eq!(split_urls("amqp://h1"), ["amqp://h1"]);
        assert_eq!(
            split_urls("amqp://u:p@h1:5672/%2f, amqps://u:p@h2/%2f ,AMQP://h3"),
            ["amqp://u:p@h1:5672/%2f", "amqps://u:p@h2/%2f", "AMQP://h3"]
        );
        // A comma in a password is not a separator.
        assert_eq!(
            split_urls("amqp://u:a,b@h1/%2f,amqp://u:c,d@h2/%2f"),
            ["amqp://u:a,b@h1/%2f", "amqp://u:c,d@h2/%2f"]
        );
        assert_eq!(split_urls(" , "), [","]);
        assert!(split_urls("  ").is_empty());
    }

    #[test]
    fn urls_that_would_reach_another_host_or_user_are_refused() {
        for url in [
            "amqp://guest:s3cr/etPW@127.0.0.1:5672/%2f",
            "amqp://guest:s3cr#etPW@127.0.0.1",
            "amqp://guest:s3cr?etPW@127.0.0.1",
            "amqp:/guest:s3cretPW@127.0.0.1",
            "amqp//guest:s3cretPW@127.0.0.1",
            "127.0.0.1:5672",
            "amqp://guest:guest@[2001:db8::1]:5672/%2f",
            "amqp://[::1]",
        ] {
            assert!(check_shape(url).is_err(), "{url}");
        }
        for url in [
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "amqps://u:p%2Fq@host/vhost?heartbeat=10",
            "amqp://u:p@ss@host",
            "amqp://host",
            "amqp://host/?heartbeat=5&connection_timeout=1000&channel_max=9&frame_max=131072",
            "amqp://host?auth_mechanism=external&",
        ] {
            assert_eq!(check_shape(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn query_parameters_no_connection_reads_are_refused() {
        for (url, key) in [
            ("amqp://host/?bogus=1", "bogus"),
            ("amqp://host/?Heartbeat=60", "Heartbeat"),
            (
                "amqp://u:p@host/v?heartbeat=5&heartbeat_interval=60",
                "heartbeat_interval",
            ),
            ("amqps://host?cacertfile=/etc/ca.pem", "cacertfile"),
            ("amqp://host?verify", "verify"),
        ] {
            let refused = check_shape(url).expect_err(url);
            assert!(refused.contains(&format!("`{key}`")), "{refused}");
            assert!(refused.contains("`connection_timeout`"), "{refused}");
        }
    }

    #[test]
    fn passwords_of_well_formed_urls_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("amqp://u:p@ss@host/vhost?heartbeat=10"),
            "amqp://u:***@host/vhost?heartbeat=10"
        );
        assert_eq!(
            redact_url("amqp://127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://[::1]:5672"), "amqp://[::1]:5672");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url(""), "");
    }

    /// Nothing between the scheme and the last `@` is shown but a plain user
    /// name: each of these passwords is `s3cr` + one odd character + `etPW`.
    #[test]
    fn passwords_of_malformed_urls_are_redacted() {
        let cases = [
            (
                "amqp://guest:s3cr/etPW@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            (
                "amqp://guest:s3cr#etPW@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            (
                "amqp://guest:s3cr?etPW@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            (
                "amqp://guest:s3cr etPW@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            (
                "amqp://guest:s3cr@etPW@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            (
                "amqp://guest:s3cr:etPW@127.0.0.1",
                "amqp://guest:***@127.0.0.1",
            ),
            (
                "amqp//guest:s3cr/etPW@127.0.0.1:5672/%2f",
                "***@127.0.0.1:5672/%2f",
            ),
            ("amqp:/guest:s3cr/etPW@127.0.0.1", "***@127.0.0.1"),
            ("guest:s3cr/etPW@127.0.0.1", "***@127.0.0.1"),
            (" amqp://guest:s3cr/etPW@127.0.0.1", "***@127.0.0.1"),
            ("amqp://gu/est:s3cr/etPW@127.0.0.1", "amqp://***@127.0.0.1"),
            ("amqp://s3cr/etPW@127.0.0.1", "amqp://***@127.0.0.1"),
            ("amqp://:s3cr/etPW@127.0.0.1", "amqp://***@127.0.0.1"),
            ("amqp://guest:s3cr/etPW", "amqp://guest:***"),
            ("amqp://guest:s3cr", "amqp://guest:***"),
            ("guest:s3cr", "guest:***"),
            ("amqp://[::1]s3cr", "amqp://***"),
            (
                "AMQP://guest:s3cr%2FetPW@127.0.0.1",
                "AMQP://guest:***@127.0.0.1",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn parse_errors_never_quote_the_password() {
        let url = "amqp://guest:s3cr/etPW@127.0.0.1";
        assert_eq!(
            parse_error_message(&format!("Invalid URL: '{url}'"), url),
            "Invalid URL: 'amqp://guest:***@127.0.0.1'"
        );
        let message = parse_error_message("invalid port number s3cr", url);
        assert!(!message.contains("s3cr"), "{message}");
        assert_eq!(
            parse_error_message("invalid port number", url),
            "invalid port number"
        );
    }
}
