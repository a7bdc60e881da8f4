"""Step guidance for data_ops: the clauses of a request, and lexical rules that name a clause's step."""

from __future__ import annotations

import re
from typing import Any

from rag_middleware.domains.clauses import NO_STEP

from .repair import request_body


# -- step guidance ----------------------------------------------------------------------------------------

_VERBS = (r"remove|drop|delete|discard|purge|clear|eliminate|dedupe|deduplicate|keep|filter|restrict|exclude|"
          r"limit|show|display|list|sort|order|arrange|rank|fill|replace|impute|put|set|use|rename|call|relabel|"
          r"convert|cast|change|make|turn|treat|trim|strip|clean|tidy|group|sum|total|count|average|compute|"
          r"calculate|find|give|get|pick|take|select|describe|summari[sz]e|plot|draw|chart|visuali[sz]e|add|tell|"
          r"return|only|finish|end|run|what|which|how")
_STEP_BREAK = re.compile(rf"\s*(?:;|\.\s+|\?\s+|!\s+|\n|:\s+(?=(?:what|which|how|who|then|now)\b)|,?\s+(?:and\s+)?then\s+|,?\s+afterwards,?\s+|"
                         r",?\s+after that,?\s+|,?\s+followed by\s+|,?\s+next,?\s+|,?\s+finally,?\s+|"
                         rf",\s+(?=(?:{_VERBS})\b)|,?\s+and\s+(?=(?:{_VERBS})\b))", re.I)


_CHART_PHRASE = re.compile(
    r"(?:,?\s*(?:and\s+)?\b(?:as|in|on|into|with|via|using|for)\s+(?:a|an|the|my|our)?\s*"
    r"(?:[\w-]+\s+){0,3}?(?:chart|graph|plot|histogram|dashboard|visual\w*|pie)\b(?:\s+please)?"
    r"|,?\s*(?:and\s+)?(?:plotted|charted|graphed|visuali[sz]ed|drawn)\b(?:\s+as\s+(?:a|an)\s+(?:[\w-]+\s+){0,2}"
    r"(?:chart|graph|plot))?)", re.I)
_ABBREVIATIONS = re.compile(r"\b(i\.e|e\.g|etc|vs)\.", re.I)


_SUBORDINATE = re.compile(r"^(?:where|wherever|if|when|whenever|in rows where|for rows where|for any rows? where)\b",
                          re.I)


def split_steps(request: str) -> list[str]:
    """The clauses of a request, one per step it asks for. The Columns line is not a step, a chart phrase
    attached to a clause ("... as a bar chart") is not a step of its own, and a leading condition ("where
    attendance is blank, put 0") belongs to the clause it conditions."""
    body = _ABBREVIATIONS.sub(lambda m: m.group(1), request_body(request)).strip().rstrip(".!?")
    out: list[str] = []
    pending = ""
    for part in _STEP_BREAK.split(body):
        clause = _CHART_PHRASE.sub("", part or "").strip(" ,.:")
        if not clause:
            continue
        if pending:
            clause, pending = f"{pending}, {clause}", ""
        if _SUBORDINATE.match(clause) and not out and "," not in clause:
            pending = clause
            continue
        out.append(clause)
    if pending:
        out.append(pending)
    return out


_EMPTY = re.compile(r"\b(missing|blank|empty|null|nan|no value|without|lacking|no)\b", re.I)
_WHOLE_ROW = re.compile(r"\b(completely|entirely|fully|whatsoever|every (single )?(field|cell|value|column)|"
                        r"all (the )?(values|cells|fields|columns)|nothing (at all|in (it|them)))\b", re.I)
_FILL = re.compile(r"\b(fill|impute|default|replace|put|set|becomes?|should (get|be)|use)\b", re.I)
_REMOVE = re.compile(r"\b(drop|remove|delete|discard|throw (away|out)|exclude|skip|get rid|take out|purge|"
                     r"eliminate|lose)\b", re.I)
_COLUMN_WORD = re.compile(r"\b(columns?|fields?)\b", re.I)
_COUNT = r"(?:\d+|two|three|four|five|six|seven|eight|nine|ten|twelve|fifteen|twenty|fifty|hundred)"
_RANKED_N = re.compile(rf"\b(top|best|highest|largest|biggest|most|greatest|lowest|smallest|worst)\b.*\b{_COUNT}\b|"
                       rf"\b{_COUNT}\b.*\b(top|best|highest|largest|biggest|most|greatest|lowest|smallest|worst)\b|"
                       rf"\btop\s+{_COUNT}\b", re.I)
_PER_GROUP = re.compile(r"\b(each|per|for every|for all the|broken down by|grouped by|by)\b", re.I)
_AGG_WORD = re.compile(r"\b(sum|total|average|mean|median|count|how many|number of|max(?:imum)?|min(?:imum)?|"
                       r"highest|lowest|largest|smallest|coldest|hottest|best|worst|biggest|most|least)\b", re.I)
_WHOLE_TABLE = re.compile(r"\b(overall|entire|whole|all rows|every row|across (all|every|the)|in total|altogether|"
                          r"grand total)\b", re.I)
_SORT_WORD = re.compile(r"\b(sort|order|arrange|rank)\b", re.I)
_WHICH_COLUMN = re.compile(r"^(?:please\s+)?(?:use|using|with|from|based on|on)\s+(?:the\s+)?[\w ]{1,40}?"
                           r"(?:\s+(?:column|field))?$", re.I)
_DESCRIBE = re.compile(r"\b(describe|descriptive|summary statistics|summary stats|quartiles?|percentiles?|"
                       r"spread)\b", re.I)
_PADDING = re.compile(r"\b(whitespace|white space|padding|padded|leading (?:and trailing )?(?:blanks?|spaces?)|"
                      r"trailing (?:blanks?|spaces?)|strip|trim)\b", re.I)
_PERIODIC = re.compile(r"\b(hourly|daily|weekly|monthly|quarterly|yearly|annual|annually)\b", re.I)
_ROW_WORD = re.compile(r"\b(rows?|records?|entries|lines?|duplicates?|duplicated|repeated|copies)\b", re.I)
_COMPARISON = re.compile(r"\b(above|below|over|under|more than|less than|greater than|fewer than|at least|at most|"
                         r"older than|newer than|younger than|higher than|lower than|exceed\w*|between)\s+"
                         r"[$\u20ac\u00a3]?-?\d", re.I)
_ONLY = re.compile(r"^(?:only|just)\b|\bonly$", re.I)
# "keep the runners from Kenya", "show orders in 'EU'": a selection by a named value (capitalised, quoted, a number)
_KEEP_VALUE = re.compile(r"^(?:[Pp]lease\s+)?(?:[Kk]eep|[Ss]how|[Ll]ist|[Ss]elect|[Dd]isplay|[Rr]eturn|[Ff]ind|[Gg]et)\b"
                         r".*\b(?:from|in|at|with|where|whose|that|for)\s+(?:the\s+)?(?:[A-Z][\w-]*|'[^']+'|\"[^\"]+\"|\d)")
_HAS_VALUE = re.compile(r"\b(have|has|having|with (?:a|an|any)|filled|present|non-?empty|not empty)\b", re.I)


def step_rule(clause: str, request: str) -> list[str] | None:
    """Lexical cues strong enough to name a step outright; None leaves the clause to the similarity vote."""
    line = next((x for x in request.splitlines() if x.lower().startswith("columns:")), "columns:")
    columns = [c.strip() for c in line.split(":", 1)[1].split(",") if c.strip()]
    lowered = clause.lower()
    names_column = any(re.search(rf"\b{re.escape(c.lower())}\b", lowered) for c in columns)
    if _WHICH_COLUMN.match(clause) and names_column:
        return [NO_STEP]  # "use the fee column" says which column, it asks for nothing new
    if _DESCRIBE.search(clause):
        return ["describe"]
    if _PADDING.search(clause):
        return ["trim_whitespace"]
    empty = _EMPTY.search(clause)
    if empty and _FILL.search(clause):
        return ["fill_missing"]
    if empty and _WHOLE_ROW.search(clause):
        return ["remove_empty_rows"]
    if _REMOVE.search(clause) and _COLUMN_WORD.search(clause) and not empty:
        return ["drop_column"]
    if _REMOVE.search(clause) and empty and names_column:
        return ["drop_missing"]
    if _RANKED_N.search(clause) and not _PER_GROUP.search(clause.replace(" by ", " ")):
        return ["top_n"]
    if _PER_GROUP.search(clause) and _AGG_WORD.search(clause) and not _WHOLE_TABLE.search(clause) \
            and not _SORT_WORD.search(clause):
        return ["group_by"]
    if _PERIODIC.search(clause) and _AGG_WORD.search(clause) and not _SORT_WORD.search(clause):
        return ["group_by"]  # "monthly mean of output" groups by the period
    if not empty and columns and re.match(
            rf"^(?:please\s+)?(?:{_REMOVE.pattern[2:-2]})\s+(?:out\s+|the\s+)?"
            rf"(?:{'|'.join(re.escape(c.lower()) for c in sorted(columns, key=len, reverse=True))})"
            rf"(?:\s+(?:column|field))?(?:\s+(?:first|too|as well))?$", lowered):
        return ["drop_column"]  # "take out nurse_count": the whole clause is a removal of one named column
    if (_COMPARISON.search(clause) or (_ONLY.search(clause) and not _HAS_VALUE.search(clause))
            or _KEEP_VALUE.search(clause)) \
            and not _AGG_WORD.search(clause) and not _SORT_WORD.search(clause) and not _REMOVE.search(clause) \
            and not empty:
        return ["filter_rows"]  # "schools above 500 students only", "delayed by more than 30 minutes"
    return None
