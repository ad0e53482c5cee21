"""Web pages. The names are used by templates, tests and redirects: keep them stable."""

from django.urls import path

from supportdesk.web.views import (
    agent,
    auth,
    health,
    mail,
    panel,
    profile,
    ticket_forms,
    tickets,
)

urlpatterns = [
    path("", auth.home, name="home"),
    path("login/", auth.login_view, name="login"),
    path("logout/", auth.logout_view, name="logout"),
    path("password-reset/", auth.password_reset, name="password_reset"),
    path("password-reset/sent/", auth.password_reset_sent, name="password_reset_sent"),
    path("password-reset/done/", auth.password_reset_done, name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        auth.password_reset_confirm,
        name="password_reset_confirm",
    ),
    path("profile/", profile.profile, name="profile"),
    path(
        "profile/tokens/<int:token_id>/revoke/",
        profile.revoke_api_token,
        name="profile_token_revoke",
    ),
    path("healthz", health.healthz, name="healthz"),
    path("tickets/", panel.panel, name="panel"),
    path("tickets/new/", ticket_forms.new_ticket, name="ticket_new"),
    path("tickets/environments/", ticket_forms.environment_options, name="environment_options"),
    path("tickets/<int:number>/", tickets.ticket_detail, name="ticket"),
    path("tickets/<int:number>/edit/", ticket_forms.edit_ticket, name="ticket_edit"),
    path("tickets/<int:number>/respond/", tickets.respond, name="ticket_respond"),
    path("tickets/<int:number>/reopen/", tickets.reopen, name="ticket_reopen"),
    path("tickets/<int:number>/close/", tickets.close, name="ticket_close"),
    path(
        "tickets/<int:number>/attachments/<int:attachment_id>/",
        tickets.download_attachment,
        name="ticket_attachment",
    ),
    path("agent/mail/", mail.mail_messages, name="mail_messages"),
    path("agent/mail/<int:message_id>/<str:action>/", mail.mail_action, name="mail_action"),
    path("agent/<str:queue>/", agent.agent_queue, name="agent_queue"),
]
