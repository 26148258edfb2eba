"""One module per section of the report, each a function `(PageContext) -> Section | None` (None: nothing
to show for this model), in the order the page shows them (`page.build.REPORT_SECTIONS`)."""
