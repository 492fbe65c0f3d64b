"""Reading Rust source for the structure checks (check-layers.sh, check-sizes.sh):
comments, strings and char literals blanked with their newlines kept (so offsets and
line numbers stay those of the file), brace matching, and the #[cfg(test)] items."""

import re


def blank(text):
    """Comments, strings and char literals replaced by spaces; newlines kept."""
    out = []; i = 0; n = len(text)
    def keep(s):
        out.append(re.sub(r"[^\n]", " ", s))
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i); j = n if j < 0 else j
            keep(text[i:j]); i = j; continue
        if text.startswith("/*", i):
            depth = 0; j = i
            while j < n:
                if text.startswith("/*", j): depth += 1; j += 2
                elif text.startswith("*/", j):
                    depth -= 1; j += 2
                    if depth == 0: break
                else: j += 1
            keep(text[i:j]); i = j; continue
        if c in "rb" and (i == 0 or not (text[i-1].isalnum() or text[i-1] == "_")):
            m = re.match(r'b?r(#*)"', text[i:i+40])
            if m:
                close = '"' + m.group(1)
                j = text.find(close, i + m.end()); j = n if j < 0 else j + len(close)
                keep(text[i:j]); i = j; continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            keep(text[i:j+1]); i = j + 1; continue
        if c == "'":
            m = re.match(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", text[i:i+12])
            if m:
                keep(text[i:i+m.end()]); i += m.end(); continue
        out.append(c); i += 1
    return "".join(out)

def match_brace(t, k):
    depth = 0
    while k < len(t):
        if t[k] == "{": depth += 1
        elif t[k] == "}":
            depth -= 1
            if depth == 0: return k
        k += 1
    return len(t) - 1

def test_spans(t):
    spans = []
    for m in re.finditer(r"#\[cfg\(test\)\]", t):
        k = m.end()
        while k < len(t) and t[k] not in "{;": k += 1
        if k < len(t) and t[k] == "{":
            spans.append((m.start(), match_brace(t, k)))
        else:
            spans.append((m.start(), k))
    return spans

def line_of(t, pos):
    return t.count("\n", 0, pos) + 1


def without_tests(t):
    """`t` (already blanked) with its #[cfg(test)] items blanked too, newlines kept."""
    out = list(t)
    for a, b in test_spans(t):
        for i in range(a, min(b + 1, len(out))):
            if out[i] != "\n":
                out[i] = " "
    return "".join(out)
