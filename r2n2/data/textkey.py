"""A near-duplicate key for short texts (tweets), so that retweets and copies that differ only in links,
mentions, case or punctuation land in the same split.

The key: lower case; a leading retweet marker (``RT @user:``, ``RT:``, ``RT``) removed; URLs (``http(s)://``,
``www.``, and the ``t.co/...`` stubs of truncated links) removed; ``@mentions`` removed; every character
that is not a letter or a digit replaced by a space; repeated whitespace collapsed. Hashtag words stay
(``#AAPL`` -> ``aapl``). Texts whose key is empty (only links and mentions) keep their own lower-cased text
as key, so they are not all merged into one group.
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["near_duplicate_key", "near_duplicate_keys"]

_URL = re.compile(r"(?:https?://|www\.)\S*|\b(?:t\.co|bit\.ly|ow\.ly)/\S*")
_RT = re.compile(r"^(?:\s*rt\b\s*(?:@\w+)?\s*:?\s*)+")  # repeated: "RT @a: RT @b: text"
_MENTION = re.compile(r"@\w+")
_NON_WORD = re.compile(r"[\W_]+")  # punctuation, symbols, whitespace (Unicode letters and digits stay)


def near_duplicate_key(text: str) -> str:
    """The normalised key of one text (see the module docstring); equal keys mean near-duplicates."""
    low = "" if text is None or (isinstance(text, float) and text != text) else str(text).lower()  # None/NaN -> ""
    t = _URL.sub(" ", low)  # URLs first: "rt" or "@" inside a link must not be read as a marker
    t = _RT.sub(" ", t)
    t = _MENTION.sub(" ", t)
    key = _NON_WORD.sub(" ", t).strip()
    return key if key else low.strip()


def near_duplicate_keys(texts: pd.Series) -> pd.Series:
    """:func:`near_duplicate_key` over a Series (pandas string methods, same index); NaN becomes ""."""
    low = texts.fillna("").astype("str").str.lower()
    t = low.str.replace(_URL, " ", regex=True)
    t = t.str.replace(_RT, " ", regex=True)
    t = t.str.replace(_MENTION, " ", regex=True)
    key = t.str.replace(_NON_WORD, " ", regex=True).str.strip()
    return key.where(key != "", low.str.strip())
