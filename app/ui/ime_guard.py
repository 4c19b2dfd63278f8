"""Japanese input: Enter that confirms a kana-kanji conversion must never send the message.

While an IME composes, the browser marks Enter's key events ``isComposing`` (keyCode 229; Safari
sends the Enter that ends a composition with keyCode 229 too). Gradio's textbox sends on Enter
without looking, so this script, added to the page's ``<head>``, stops those events on the
message box before Gradio's own handlers see them (capture phase), and leaves them to the IME.
Shift+Enter stays a new line; Enter after composing sends.
"""

from __future__ import annotations

CHAT_INPUT_ID = "chat-input"

IME_GUARD_SCRIPT = f"""
<script>
(() => {{
  const composing = (event) => event.key === "Enter" && (event.isComposing || event.keyCode === 229);
  for (const type of ["keydown", "keypress", "keyup"]) {{
    document.addEventListener(type, (event) => {{
      const box = event.target instanceof Element ? event.target.closest("#{CHAT_INPUT_ID}") : null;
      if (box && composing(event)) {{
        event.stopImmediatePropagation();
      }}
    }}, true);
  }}
}})();
</script>
"""
