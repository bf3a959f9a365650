-- notebook-download.lua: put a "Download this notebook" link under the title of every page
-- whose source is a Jupyter notebook (the chapters). _quarto.yml copies chapters/*.ipynb into
-- the site as resources, so the notebook sits next to its page: chapters/NN_name.html links
-- to chapters/NN_name.ipynb. Pages written in .qmd (preface, references) get no link.

local function notebook_name()
  local input = quarto and quarto.doc and quarto.doc.input_file or nil
  if input == nil or input == "" then
    input = PANDOC_STATE and PANDOC_STATE.input_files and PANDOC_STATE.input_files[1] or ""
  end
  if not input:match("%.ipynb$") then
    return nil
  end
  return pandoc.path.filename(input)
end

function Pandoc(doc)
  if not quarto.doc.is_format("html") then
    return doc
  end
  local name = notebook_name()
  if name == nil then
    return doc
  end
  local link = pandoc.Link(
    { pandoc.Str("Download this notebook"), pandoc.Space(), pandoc.Code(name) },
    name,
    "Download the Jupyter notebook of this chapter (run it with .venv/bin/jupyter lab)",
    -- data-noresolveinput: Quarto (>= 1.5) would otherwise rewrite a link to the input
    -- notebook into a link to the rendered page, and "download" would save HTML as .ipynb
    pandoc.Attr("", { "notebook-download" }, { { "download", name }, { "data-noresolveinput", "" } })
  )
  local para = pandoc.Div({ pandoc.Para({ link }) }, pandoc.Attr("", { "notebook-download-box" }))
  -- after the chapter title (the first level-1 heading), else at the top
  local at = 1
  for i, block in ipairs(doc.blocks) do
    if block.t == "Header" and block.level == 1 then
      at = i + 1
      break
    end
  end
  doc.blocks:insert(at, para)
  return doc
end
