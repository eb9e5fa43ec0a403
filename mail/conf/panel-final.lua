-- Managed by the hosting panel ("Prepare for mail"): changes here are reported as drift and undone.
-- OpenDKIM's final hook (FinalPolicyScript): refuse what panel-setup.lua found a logged-in
-- mailbox may not send as, with a reply that says why.
if panel_tempfail ~= nil then
  odkim.set_reply(ctx, "451", "4.7.1", "the sender check is not available, try again later")
  odkim.set_result(ctx, SMFIS_TEMPFAIL)
elseif panel_refused ~= nil then
  local function safe(text)
    return (string.gsub(text, "[^%w@._+()-]", "?"))
  end
  odkim.set_reply(ctx, "550", "5.7.1", "header From " .. safe(panel_refused)
    .. " is not an address " .. safe(panel_user) .. " may send as")
  odkim.set_result(ctx, SMFIS_REJECT)
end
return nil
