import re
from collections.abc import Iterable
from html import escape

from django import template
from django.utils.html import format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import ngettext

from consent.selectors import SinkStatus

register = template.Library()


@register.filter
def period(days: int) -> str:
    """Say a retention period in years when it is whole years, else in days."""
    if days >= 365 and days % 365 == 0:
        years = days // 365
        return ngettext("%(n)d year", "%(n)d years", years) % {"n": years}
    return ngettext("%(n)d day", "%(n)d days", days) % {"n": days}


@register.filter
def paragraphs(text: str) -> SafeString:
    """Show text as typed in a textarea: blank lines part paragraphs, single line breaks do not."""
    parts = [" ".join(part.split()) for part in re.split(r"\n\s*\n", text.strip())]
    return format_html_join("\n", "<p>{}</p>", ((part,) for part in parts if part))


@register.filter
def spans(texts: Iterable[str]) -> SafeString:
    """Show each text in a span of its own, escaped: a history row's facts, without a loop tag."""
    return mark_safe(" ".join(f"<span>{escape(text)}</span>" for text in texts))  # noqa: S308


@register.filter
def sink_items(sinks: Iterable[tuple[SinkStatus, str]]) -> SafeString:
    """Show where a change stands in each sink as list items styled by state, without a loop tag."""
    return mark_safe(  # noqa: S308 - every value is escaped
        "\n".join(
            f'<li class="sink sink-{escape(status.state)}'
            f'{" sink-retrying" if status.retrying else ""}">'
            f'<span class="sink-name">{escape(status.sink)}</span> {escape(text)}</li>'
            for status, text in sinks
        )
    )
