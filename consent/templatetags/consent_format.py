import re

from django import template
from django.utils.html import format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

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
