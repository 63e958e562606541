//! The pool's URL as messages show it: without the password.

/// `mysql://app:secret@db:3306/app` becomes `mysql://app@db:3306/app`; a
/// `password=` query parameter is dropped too. A path (SQLite) is unchanged.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.to_ascii_lowercase().starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn drops_passwords_only() {
        assert_eq!(
            redact("mysql://app:s3cret@db:3306/app"),
            "mysql://app@db:3306/app"
        );
        assert_eq!(
            redact("postgres://app@h1,h2/app?password=x&target_session_attrs=read-write"),
            "postgres://app@h1,h2/app?target_session_attrs=read-write"
        );
        assert_eq!(redact("postgres://db/app?password=x"), "postgres://db/app");
        assert_eq!(redact("mysql://db"), "mysql://db");
        assert_eq!(redact("/var/lib/app.db"), "/var/lib/app.db");
        assert_eq!(redact(":memory:"), ":memory:");
    }
}
