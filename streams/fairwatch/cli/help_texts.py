"""Help texts shared by options of several commands, and how command lists are shown."""

from typing import Any

from typer.core import TyperCommand, TyperGroup

STORE_HELP = "clickhouse://user:pass@host:9000/db or chdb:///path (default: FAIRWATCH_CLICKHOUSE)"
RATIO_FLOOR_HELP = ("FMR below this counts as this in the ratio differentials (max/min, Max/GeoMean, IR), so"
                    " zero-error groups give finite ratio bounds; IR needs both floors (default: none; a report takes its --policy"
                    " file's ratio_floor).")


class WrappedHelpGroup(TyperGroup):
    """Lists each command with its whole first sentence, wrapped to the terminal: click would cut it
    to one line ending in "..."."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class PlainUsageCommand(TyperCommand):
    """Usage lines in the usual form, ``fairwatch replay [OPTIONS] EVENTS OUTCOMES``: typer writes a
    required argument as ``{events}``, which reads like a placeholder to fill in braces."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or param.name or "").upper()
                name += "..." if param.nargs != 1 else ""
                pieces.append(name if param.required else f"[{name}]")
        return pieces
