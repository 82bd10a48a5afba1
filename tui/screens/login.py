"""Login screen: log in or register against the instance's gateway, then store the session."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from stockctl.settings import Settings
from tui.workers import job


class LoginScreen(Screen[str]):
    """Email and password; Log in or Register. Dismissed with the email once a session is saved."""

    AUTO_FOCUS = "#login-email"
    BINDINGS = [Binding("ctrl+r", "register", "Register"), Binding("ctrl+q", "app.quit", "Quit")]

    DEFAULT_CSS = """
    LoginScreen { align: center middle; }
    LoginScreen #login-box { width: 60; max-width: 100%; height: auto; border: round $accent; padding: 1 2; }
    LoginScreen Input { margin-bottom: 1; }
    LoginScreen Horizontal { height: auto; }
    LoginScreen Button { margin-right: 2; }
    LoginScreen #login-status { height: auto; margin-top: 1; }
    LoginScreen #login-status.error { color: $error; }
    """

    def __init__(self, settings: Settings, reason: str = "") -> None:
        super().__init__()
        self.settings = settings
        self.reason = reason

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="login-box"):
            yield Static("[b]stockctl[/b] — log in to this instance", id="login-title")
            yield Input(placeholder="email", id="login-email")
            yield Input(placeholder="password (12+ characters)", password=True, id="login-password")
            with Horizontal():
                yield Button("Log in", id="login-button", variant="primary")
                yield Button("Register", id="register-button")
            yield Label(self.reason or "no stored login for this instance", id="login-status")
        yield Footer()

    def show_status(self, text: str, error: bool = False) -> None:
        """The line under the buttons: progress, or why the last try was refused."""
        label = self.query_one("#login-status", Label)
        label.update(text)
        label.set_class(error, "error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "login-email":
            self.query_one("#login-password", Input).focus()
        else:
            self.action_login()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "register-button":
            self.action_register()
        else:
            self.action_login()

    def action_login(self) -> None:
        """Log in with the email and password."""
        self._submit("login")

    def action_register(self) -> None:
        """Create an account with the email and password, and log in."""
        self._submit("register")

    def _submit(self, what: str) -> None:
        email = self.query_one("#login-email", Input).value.strip()
        password = self.query_one("#login-password", Input).value
        if not email or not password:
            self.show_status("give an email and a password", error=True)
            return
        self.show_status("registering…" if what == "register" else "logging in…")
        self._authenticate(what, email, password)

    @job("authenticate", exclusive=True)
    def _authenticate(self, what: str, email: str, password: str) -> None:
        """Runs on the app: a refusal reaches the app's one worker handler, which calls :meth:`show_status`."""
        from stockctl.client.credentials import AuthClient, Session, base_url, save

        url = base_url(self.settings)
        with AuthClient(url) as client:
            doc = client.register(email, password) if what == "register" else client.login(email, password)
        save(self.settings, Session.from_tokens(url, doc))
        self.app.call_from_thread(self.dismiss, email)
