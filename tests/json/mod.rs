//! A small JSON reader, enough for `cargo metadata`'s output
//! (`tests/rust_version.rs`). Not serde_json: the root package's
//! dev-dependencies are built for `cargo run --example quickstart` too.

use std::iter::Peekable;
use std::str::Chars;

#[derive(Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number as written.
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The value under `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// The one JSON value in `text`, or what is wrong with it.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut reader = Reader {
        chars: text.chars().peekable(),
    };
    let value = reader.value()?;
    reader.skip_space();
    match reader.chars.next() {
        None => Ok(value),
        Some(c) => Err(format!("unexpected {c:?} after the value")),
    }
}

struct Reader<'a> {
    chars: Peekable<Chars<'a>>,
}

impl Reader<'_> {
    fn skip_space(&mut self) {
        while self.chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
    }

    fn expect(&mut self, wanted: char) -> Result<(), String> {
        self.skip_space();
        match self.chars.next() {
            Some(c) if c == wanted => Ok(()),
            other => Err(format!("expected {wanted:?}, found {other:?}")),
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_space();
        match self.chars.peek().copied() {
            Some('{') => self.object(),
            Some('[') => self.array(),
            Some('"') => self.string().map(Value::String),
            Some('t') => self.word("true", Value::Bool(true)),
            Some('f') => self.word("false", Value::Bool(false)),
            Some('n') => self.word("null", Value::Null),
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let mut number = String::new();
                while let Some(c) = self
                    .chars
                    .next_if(|c| c.is_ascii_digit() || "+-.eE".contains(*c))
                {
                    number.push(c);
                }
                Ok(Value::Number(number))
            }
            other => Err(format!("expected a value, found {other:?}")),
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, String> {
        for wanted in word.chars() {
            if self.chars.next() != Some(wanted) {
                return Err(format!("expected {word}"));
            }
        }
        Ok(value)
    }

    /// The items between `open` and `close`, separated by commas.
    fn list<T>(
        &mut self,
        open: char,
        close: char,
        mut item: impl FnMut(&mut Self) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        self.expect(open)?;
        let mut items = Vec::new();
        self.skip_space();
        if self.chars.next_if_eq(&close).is_some() {
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            self.skip_space();
            match self.chars.next() {
                Some(',') => {}
                Some(c) if c == close => return Ok(items),
                other => return Err(format!("expected ',' or {close:?}, found {other:?}")),
            }
        }
    }

    fn array(&mut self) -> Result<Value, String> {
        self.list('[', ']', Self::value).map(Value::Array)
    }

    fn object(&mut self) -> Result<Value, String> {
        self.list('{', '}', |r| {
            r.skip_space();
            let key = r.string()?;
            r.expect(':')?;
            Ok((key, r.value()?))
        })
        .map(Value::Object)
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            match self.chars.next().ok_or("unterminated string")? {
                '"' => return Ok(out),
                '\\' => match self.chars.next().ok_or("unterminated escape")? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => out.push(self.unicode_escape()?),
                    c => out.push(c), // `\"`, `\\`, `\/`
                },
                c => out.push(c),
            }
        }
    }

    /// The rest of `\uXXXX`, with a surrogate pair's second half.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let high = self.hex4()?;
        if !(0xD800..0xDC00).contains(&high) {
            return char::from_u32(high).ok_or_else(|| format!("bad \\u{high:04x}"));
        }
        if self.chars.next() != Some('\\') || self.chars.next() != Some('u') {
            return Err(format!("\\u{high:04x} lacks its low surrogate"));
        }
        let low = self.hex4()?;
        if !(0xDC00..0xE000).contains(&low) {
            return Err(format!("bad surrogate pair {high:04x} {low:04x}"));
        }
        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        char::from_u32(code).ok_or_else(|| format!("bad surrogate pair {high:04x} {low:04x}"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits: String = (0..4).filter_map(|_| self.chars.next()).collect();
        u32::from_str_radix(&digits, 16).map_err(|_| format!("bad \\u escape {digits:?}"))
    }
}

#[test]
fn reads_what_cargo_metadata_writes() {
    let v = parse(
        r#" {"a": [1, -2.5e3, true, false, null], "b": "x\"\\\/\u00e9\ud83d\ude00\n", "c": {}} "#,
    )
    .expect("valid JSON");
    assert_eq!(
        v.get("a"),
        Some(&Value::Array(vec![
            Value::Number("1".into()),
            Value::Number("-2.5e3".into()),
            Value::Bool(true),
            Value::Bool(false),
            Value::Null,
        ]))
    );
    assert_eq!(v.get("b").and_then(Value::as_str), Some("x\"\\/é😀\n"));
    assert_eq!(v.get("c"), Some(&Value::Object(Vec::new())));
    assert_eq!(v.get("d"), None);
    for bad in [
        r#"{"a" 1}"#,
        "[1,]",
        r#""open"#,
        "[1] 2",
        "tru",
        r#""\ud83d""#,
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}
