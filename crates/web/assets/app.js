// Progressive enhancement: favourite and follow buttons post in the background and update
// in place. Without this script the same forms post and the page reloads.
"use strict";
window.crescendoEnhanced = true;
document.addEventListener("submit", async (event) => {
  const form = event.target;
  const kind = form.dataset && form.dataset.enhance;
  if (kind !== "favorite" && kind !== "follow") return;
  event.preventDefault();
  const button = form.querySelector("button");
  const action = form.querySelector('input[name="action"]');
  button.disabled = true;
  try {
    // getAttribute: the form's hidden input named "action" shadows the form.action property
    const res = await fetch(form.getAttribute("action"), {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!res.ok) { form.submit(); return; }
    const data = await res.json();
    if (kind === "favorite") {
      button.setAttribute("aria-pressed", String(data.favorited));
      action.value = data.favorited ? "remove" : "add";
      const count = button.querySelector(".count");
      if (count) count.textContent = String(data.favoritesCount);
      if (/Favorite|Unfavorite/.test(button.textContent)) {
        button.firstChild.textContent = data.favorited ? "♥ Unfavorite (" : "♥ Favorite (";
      }
    } else {
      button.setAttribute("aria-pressed", String(data.following));
      action.value = data.following ? "unfollow" : "follow";
      button.textContent = button.textContent.replace(/^(Follow|Unfollow)/, data.following ? "Unfollow" : "Follow");
    }
  } catch (_) {
    form.submit();
  } finally {
    button.disabled = false;
  }
});
