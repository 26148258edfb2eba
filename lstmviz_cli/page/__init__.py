"""The page: what lstmviz shows, as typed data (`model.Page`), built before anything is drawn.

`build.build_page(run, analysis, view)` builds the report from one section module per section
(`sections/`); `diff.build_diff_page` and `index.build_index_page` build the other pages. Every
renderer (`render.html`, `lstmviz figures`) reads a Page; the page imports nothing from `render/`.
"""
