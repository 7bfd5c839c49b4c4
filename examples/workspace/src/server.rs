//! The MCP server: every data-bearing request verifies its identity assertion first, then runs
//! against the store as the asserted caller.

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, Implementation, ListResourceTemplatesResult,
        ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
        ReadResourceResponse, ServerCapabilities, ServerConfig,
    },
    service::RequestContext,
};

use crate::{
    identity::{self, Caller, IdentityVerifier},
    resources,
    store::Store,
    tools,
};

/// The workspace backend as an MCP server handler.
///
/// Lifecycle requests (`initialize`, `ping`, `server/discover`) are answered without an assertion:
/// the gateway opens its connection before any caller exists, and they carry no tenant data.
/// Every other request this server implements is refused without a valid one.
#[derive(Debug)]
pub struct Workspace {
    store: Store,
    verifier: IdentityVerifier,
}

impl Workspace {
    /// A server over `store` that trusts the assertions `verifier` accepts.
    pub fn new(store: Store, verifier: IdentityVerifier) -> Self {
        Self { store, verifier }
    }

    /// The verified caller of the request `(method, target)` that `context` belongs to, or the
    /// refusal to send.
    fn caller(
        &self,
        context: &RequestContext<RoleServer>,
        request: (&str, Option<&str>),
    ) -> Result<Caller, McpError> {
        // rmcp moves the wire `params._meta` into the context before dispatch.
        self.verifier
            .verify_meta(&context.meta.0.0, request)
            .map_err(|error| identity::refusal(&error))
    }
}

impl ServerHandler for Workspace {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::default();
        info.capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .build();
        info.server_info = Implementation::new("portcullis-workspace", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "Reference multi-tenant workspace: policy documents, tickets, records and HR reports. \
             Every request must carry the gateway's signed identity assertion."
                .to_owned(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.caller(&context, ("tools/list", None))?;
        Ok(ListToolsResult::with_all_items(tools::catalog()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = self.caller(&context, ("tools/call", Some(&request.name)))?;
        let arguments = request.arguments.unwrap_or_default();
        tools::call(&self.store, &caller, &request.name, &arguments).map(Into::into)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let caller = self.caller(&context, ("resources/list", None))?;
        let resources = resources::list(&self.store, &caller).map_err(|e| crate::internal(&e))?;
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.caller(&context, ("resources/templates/list", None))?;
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let caller = self.caller(&context, ("resources/read", Some(&request.uri)))?;
        match resources::read(&self.store, &caller, &request.uri) {
            Ok(Some(result)) => Ok(result.into()),
            // SECURITY: fixed text, without the URI, whether the resource is missing, of another
            // tenant or confidential.
            Ok(None) => Err(McpError::resource_not_found("resource not found", None)),
            Err(error) => Err(crate::internal(&error)),
        }
    }
}
