"""Render an Ollama Modelfile TEMPLATE with Go's real text/template (the `go` toolchain), for the export tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

GO_RENDER = """package main
import ("encoding/json"; "os"; "text/template")
type Msg struct { Role string; Content string }
func main() {
  var in struct { Template string; Messages []Msg }
  if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil { panic(err) }
  t := template.Must(template.New("m").Parse(in.Template))
  if err := t.Execute(os.Stdout, map[string]any{"Messages": in.Messages}); err != nil { panic(err) }
}
"""


def render_with_go(tmp_path: Path, template: str, conversation: list[dict[str, str]]) -> str:
    """What Go's text/template prints for ``template`` over ``conversation`` (role/content dicts)."""
    program = tmp_path / "render.go"
    if not program.exists():
        program.write_text(GO_RENDER)
    msgs = [{"Role": m["role"], "Content": m["content"]} for m in conversation]
    proc = subprocess.run(["go", "run", str(program)], input=json.dumps({"Template": template, "Messages": msgs}),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
