//! The four list operations as one: forwarded to a single upstream page by page, or gathered
//! from every upstream, renamed and returned as one page.

use portcullis_policy::{CapabilityKind, PolicyEngine, Principal};
use rmcp::model::{
    CacheScope, ClientRequest, Cursor, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, RequestOptionalParam,
    ServerResult,
};

use rmcp::{ErrorData as McpError, RoleServer, service::RequestContext};
use serde::de::DeserializeOwned;

use super::{Gateway, GatewayHandler, guard, handler::reshape};

/// A list result kind: how to ask for it, and what the gateway does to each item.
pub(super) trait Listing: Sized {
    type Item;
    /// The request for one page.
    /// The list method, for its audit record.
    const METHOD: &'static str;
    fn request(params: Option<PaginatedRequestParams>) -> ClientRequest;
    /// The page in an upstream's answer, if the answer is of this kind.
    fn page(result: ServerResult) -> Option<Self>;
    /// Items and the cursor of the next page.
    fn parts(&mut self) -> (&mut Vec<Self::Item>, &mut Option<Cursor>);
    /// Give an item of upstream `index` its public form, and learn its route.
    fn adopt(gateway: &Gateway, index: usize, item: &mut Self::Item);
    /// One page holding `items`.
    fn of(items: Vec<Self::Item>) -> Self;
    /// Drop `ttlMs` and `cacheScope`.
    fn clear_cache_hints(&mut self);
    /// Say the page holds what one caller may see: `cacheScope: private`.
    fn mark_private(&mut self);
    /// Which of `items` `principal` may see.
    fn visible(
        policy: &PolicyEngine,
        principal: &Principal,
        era: &str,
        items: &[Self::Item],
    ) -> Vec<bool>;
}

impl Listing for ListToolsResult {
    type Item = rmcp::model::Tool;
    const METHOD: &'static str = "tools/list";
    fn request(params: Option<PaginatedRequestParams>) -> ClientRequest {
        ClientRequest::ListToolsRequest(request(params))
    }
    fn page(result: ServerResult) -> Option<Self> {
        match result {
            ServerResult::ListToolsResult(page) => Some(page),
            _ => None,
        }
    }
    fn parts(&mut self) -> (&mut Vec<Self::Item>, &mut Option<Cursor>) {
        (&mut self.tools, &mut self.next_cursor)
    }
    fn adopt(gateway: &Gateway, index: usize, item: &mut Self::Item) {
        item.name = gateway.public_name(index, &item.name).into();
        gateway.learn_tool(item);
    }
    fn of(items: Vec<Self::Item>) -> Self {
        Self::with_all_items(items)
    }
    fn clear_cache_hints(&mut self) {
        self.ttl_ms = None;
        self.cache_scope = None;
    }
    fn mark_private(&mut self) {
        self.cache_scope = Some(CacheScope::Private);
    }
    fn visible(
        policy: &PolicyEngine,
        principal: &Principal,
        _era: &str,
        items: &[Self::Item],
    ) -> Vec<bool> {
        let names: Vec<&str> = items.iter().map(|item| item.name.as_ref()).collect();
        policy.visible_all(principal, CapabilityKind::Tool, &names)
    }
}

impl Listing for ListPromptsResult {
    type Item = rmcp::model::Prompt;
    const METHOD: &'static str = "prompts/list";
    fn request(params: Option<PaginatedRequestParams>) -> ClientRequest {
        ClientRequest::ListPromptsRequest(request(params))
    }
    fn page(result: ServerResult) -> Option<Self> {
        match result {
            ServerResult::ListPromptsResult(page) => Some(page),
            _ => None,
        }
    }
    fn parts(&mut self) -> (&mut Vec<Self::Item>, &mut Option<Cursor>) {
        (&mut self.prompts, &mut self.next_cursor)
    }
    fn adopt(gateway: &Gateway, index: usize, item: &mut Self::Item) {
        item.name = gateway.public_name(index, &item.name);
    }
    fn of(items: Vec<Self::Item>) -> Self {
        Self::with_all_items(items)
    }
    fn clear_cache_hints(&mut self) {
        self.ttl_ms = None;
        self.cache_scope = None;
    }
    fn mark_private(&mut self) {
        self.cache_scope = Some(CacheScope::Private);
    }
    fn visible(
        policy: &PolicyEngine,
        principal: &Principal,
        _era: &str,
        items: &[Self::Item],
    ) -> Vec<bool> {
        let names: Vec<&str> = items.iter().map(|item| item.name.as_str()).collect();
        policy.visible_all(principal, CapabilityKind::Prompt, &names)
    }
}

impl Listing for ListResourcesResult {
    type Item = rmcp::model::Resource;
    const METHOD: &'static str = "resources/list";
    fn request(params: Option<PaginatedRequestParams>) -> ClientRequest {
        ClientRequest::ListResourcesRequest(request(params))
    }
    fn page(result: ServerResult) -> Option<Self> {
        match result {
            ServerResult::ListResourcesResult(page) => Some(page),
            _ => None,
        }
    }
    fn parts(&mut self) -> (&mut Vec<Self::Item>, &mut Option<Cursor>) {
        (&mut self.resources, &mut self.next_cursor)
    }
    fn adopt(gateway: &Gateway, index: usize, item: &mut Self::Item) {
        // URIs are global names already: they are routed, never rewritten.
        gateway.learn_resource(&item.uri, index);
    }
    fn of(items: Vec<Self::Item>) -> Self {
        Self::with_all_items(items)
    }
    fn clear_cache_hints(&mut self) {
        self.ttl_ms = None;
        self.cache_scope = None;
    }
    fn mark_private(&mut self) {
        self.cache_scope = Some(CacheScope::Private);
    }
    fn visible(
        policy: &PolicyEngine,
        principal: &Principal,
        era: &str,
        items: &[Self::Item],
    ) -> Vec<bool> {
        items
            .iter()
            .map(|item| super::guard::resource_listed(policy, principal, era, &item.uri))
            .collect()
    }
}

impl Listing for ListResourceTemplatesResult {
    type Item = rmcp::model::ResourceTemplate;
    const METHOD: &'static str = "resources/templates/list";
    fn request(params: Option<PaginatedRequestParams>) -> ClientRequest {
        ClientRequest::ListResourceTemplatesRequest(request(params))
    }
    fn page(result: ServerResult) -> Option<Self> {
        match result {
            ServerResult::ListResourceTemplatesResult(page) => Some(page),
            _ => None,
        }
    }
    fn parts(&mut self) -> (&mut Vec<Self::Item>, &mut Option<Cursor>) {
        (&mut self.resource_templates, &mut self.next_cursor)
    }
    fn adopt(gateway: &Gateway, index: usize, item: &mut Self::Item) {
        gateway.learn_template(&item.uri_template, index);
    }
    fn of(items: Vec<Self::Item>) -> Self {
        Self::with_all_items(items)
    }
    fn clear_cache_hints(&mut self) {
        self.ttl_ms = None;
        self.cache_scope = None;
    }
    fn mark_private(&mut self) {
        self.cache_scope = Some(CacheScope::Private);
    }
    fn visible(
        policy: &PolicyEngine,
        principal: &Principal,
        _era: &str,
        items: &[Self::Item],
    ) -> Vec<bool> {
        let names: Vec<&str> = items
            .iter()
            .map(|item| item.uri_template.as_str())
            .collect();
        policy.visible_all(principal, CapabilityKind::Resource, &names)
    }
}

fn request<M: Default, P>(params: Option<P>) -> RequestOptionalParam<M, P> {
    RequestOptionalParam {
        method: M::default(),
        params,
        extensions: Default::default(),
    }
}

impl GatewayHandler {
    /// A list as this caller may see it.
    pub(super) async fn list<L: Listing + DeserializeOwned>(
        &self,
        params: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<L, McpError> {
        let mut page = self.gather::<L>(params, &context).await?;
        let record = guard::filter(&self.gateway, &context, L::METHOD, &mut page)?;
        if let (Some(record), Some(trail)) = (record, self.gateway.trail()) {
            // A list changes nothing: its record is queued, never waited for.
            let _ = trail
                .record(record, portcullis_audit::Durability::Queued)
                .await;
        }
        if self.session.is_session() {
            // Cache hints are a stateless-era field; a session client never asked for them.
            page.clear_cache_hints();
        }
        Ok(page)
    }

    /// Every item, unfiltered: only to learn names and routes, never for a caller.
    pub(super) async fn list_unfiltered<L: Listing + DeserializeOwned>(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<L, McpError> {
        self.gather::<L>(None, context).await
    }

    async fn gather<L: Listing + DeserializeOwned>(
        &self,
        params: Option<PaginatedRequestParams>,
        context: &RequestContext<RoleServer>,
    ) -> Result<L, McpError> {
        let gateway = &self.gateway;
        if gateway.upstream_count() == 1 {
            let mut page = reshape(self.send(0, L::request(params), context).await?, L::page)?;
            page.parts()
                .0
                .iter_mut()
                .for_each(|item| L::adopt(gateway, 0, item));
            return Ok(page);
        }
        // Several upstreams: every page of each, as one page. Cursors of different upstreams
        // cannot be combined into one honest cursor.
        let mut items = Vec::new();
        for index in 0..gateway.upstream_count() {
            let mut cursor = None;
            loop {
                let params = PaginatedRequestParams::default().with_cursor(cursor.take());
                let result = self.send(index, L::request(Some(params)), context).await;
                let mut page = match result.and_then(|result| reshape(result, L::page)) {
                    Ok(page) => page,
                    Err(error) => {
                        let upstream = gateway.upstream_name(index);
                        tracing::warn!(%upstream, code = ?error.code, "list failed; upstream left out");
                        break;
                    }
                };
                let (page_items, next) = page.parts();
                page_items
                    .iter_mut()
                    .for_each(|item| L::adopt(gateway, index, item));
                items.append(page_items);
                match next.take() {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(L::of(items))
    }
}
