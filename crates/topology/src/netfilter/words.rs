//! A command line split into words as the shell splits it for iptables:
//! whitespace separates, '...' and "..." quote (the quotes removed), a
//! backslash escapes the next character. Each word keeps its byte offset in
//! the line, for errors that point at it.

/// The words of a line and a cursor.
#[derive(Clone, Debug)]
pub struct ShellWords {
    pub words: Vec<(usize, String)>,
    pub pos: usize,
}

impl ShellWords {
    /// Err(offset) for an unterminated quote.
    pub fn new(line: &str) -> Result<ShellWords, usize> {
        let mut words = Vec::new();
        let mut cur: Option<(usize, String)> = None;
        let mut quote: Option<(char, usize)> = None;
        let mut chars = line.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match (quote, c) {
                (Some((q, _)), c) if c == q => quote = None,
                (Some(_), c) => cur.get_or_insert((i, String::new())).1.push(c),
                (None, '\'' | '"') => {
                    cur.get_or_insert((i, String::new()));
                    quote = Some((c, i));
                }
                (None, '\\') => {
                    let w = cur.get_or_insert((i, String::new()));
                    match chars.next() {
                        Some((_, '\n')) | None => {}
                        Some((_, n)) => w.1.push(n),
                    }
                }
                (None, c) if c.is_whitespace() => {
                    if let Some(w) = cur.take() {
                        words.push(w);
                    }
                }
                (None, c) => cur.get_or_insert((i, String::new())).1.push(c),
            }
        }
        if let Some((_, at)) = quote {
            return Err(at);
        }
        if let Some(w) = cur.take() {
            words.push(w);
        }
        Ok(ShellWords { words, pos: 0 })
    }

    /// The next word and its index, moving on.
    pub fn next_word(&mut self) -> Option<(usize, &str)> {
        let i = self.pos;
        let w = self.words.get(i)?;
        self.pos += 1;
        Some((i, w.1.as_str()))
    }

    pub fn peek(&self) -> Option<&str> {
        self.words.get(self.pos).map(|w| w.1.as_str())
    }
}
