"""Path converters for numbers the database can hold: a larger one is a 404, not a 500."""


class RowId:
    """A row's primary key: a PostgreSQL bigint."""

    regex = "[1-9][0-9]{0,17}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


class EventNumber(RowId):
    """A user's event number, or a policy's version: a PostgreSQL integer."""

    regex = "[1-9][0-9]{0,8}"
