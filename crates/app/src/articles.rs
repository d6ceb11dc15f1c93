//! Articles: read, list, feed, write, favourite.

use crate::users::{Profile, ProfileView};
use crate::{App, AppError, AppResult, Cached, FieldErrors, keys};
use crescendo_domain::{FieldError, Id, Slug, Tag, Text};
use crescendo_store::{ArticleChanges, ArticleFilter, ArticleRecord, NewArticle, Page};
use futures_util::future::{join_all, try_join};
use std::collections::HashMap;
use std::sync::Arc;

/// An article's shared record with its author's, as the cache holds them: what a viewer's
/// view is joined from.
pub(crate) type SharedArticle = (Arc<Cached<ArticleRecord>>, Arc<Cached<Profile>>);

/// The most tags an article may have.
const MAX_TAGS: usize = 20;

/// An article as one viewer sees it.
#[derive(Clone, Debug)]
pub struct ArticleView {
    /// What every viewer sees (shared, cached).
    pub article: Arc<Cached<ArticleRecord>>,
    /// The author, with whether the viewer follows them.
    pub author: ProfileView,
    /// Whether the viewer favourited it.
    pub favorited: bool,
}

/// Fields of a new or changed article; absent fields stay as they are on update.
#[derive(Clone, Debug, Default)]
pub struct ArticleInput {
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Markdown body.
    pub body: Option<String>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Cover image URL (an upload's); empty removes it.
    pub cover_image: Option<String>,
}

/// A list request: at most one of each filter, and a window.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Only articles with this tag.
    pub tag: Option<String>,
    /// Only articles by this username.
    pub author: Option<String>,
    /// Only articles favourited by this username.
    pub favorited: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Items to skip.
    pub offset: u32,
}

fn validate_tags(errs: &mut FieldErrors, tags: Option<&Vec<String>>) -> Option<Vec<String>> {
    let tags = tags?;
    if tags.len() > MAX_TAGS {
        errs.0.push(FieldError::new(
            "tagList",
            format!("may hold at most {MAX_TAGS} tags"),
        ));
        return None;
    }
    let mut out = Vec::with_capacity(tags.len());
    for t in tags {
        out.push(errs.check(Tag::parse(t))?.into_string());
    }
    Some(out)
}

/// A cover image URL: empty (none), an http(s) URL, or a path on this site (`/media/…`).
fn validate_cover(errs: &mut FieldErrors, cover: Option<&str>) -> Option<String> {
    let c = errs.check(Text::optional("coverImage", cover?, 2_000))?;
    if !(c.is_empty()
        || c.starts_with("https://")
        || c.starts_with("http://")
        || c.starts_with('/'))
    {
        errs.0
            .push(FieldError::new("coverImage", "must be an http(s) URL"));
        return None;
    }
    Some(c)
}

impl App {
    /// An article's shared record, cached ("not found" too).
    pub(crate) async fn article_record(
        &self,
        id: Id,
    ) -> AppResult<Option<Arc<Cached<ArticleRecord>>>> {
        self.cached(&keys::article(id), || async {
            Ok::<_, AppError>(
                self.store()
                    .articles_by_ids(&[id])
                    .await?
                    .pop()
                    .map(Cached::new),
            )
        })
        .await
    }

    /// What `viewer` favourited, sorted, cached under the viewer's key.
    async fn favorites_of(&self, viewer: Id) -> AppResult<Arc<Vec<Id>>> {
        let v = self
            .cached(&keys::favorites(viewer), || async {
                let mut ids = self.store().favorite_ids(viewer).await?;
                ids.sort_unstable();
                Ok::<_, AppError>(Some(ids))
            })
            .await?;
        Ok(v.unwrap_or_default())
    }

    async fn article_by_slug(&self, slug: &str) -> AppResult<Arc<Cached<ArticleRecord>>> {
        let id = Slug::parse(slug).ok_or(AppError::NotFound("article"))?.id();
        self.article_record(id)
            .await?
            .ok_or(AppError::NotFound("article"))
    }

    /// Joins shared records with the viewer's own facts, keeping the order given.
    async fn views(
        &self,
        viewer: Option<Id>,
        articles: Vec<Arc<Cached<ArticleRecord>>>,
    ) -> AppResult<Vec<ArticleView>> {
        let mut items = Vec::with_capacity(articles.len());
        let mut authors: HashMap<Id, Arc<Cached<Profile>>> = HashMap::new();
        if !self.caching() {
            // no cache to ask one by one: every author in one query
            let mut ids: Vec<Id> = articles.iter().map(|a| a.author_id).collect();
            ids.sort_unstable();
            ids.dedup();
            for u in self.store().users_by_ids(&ids).await? {
                authors.insert(
                    u.id,
                    Arc::new(Cached::new(Profile {
                        id: u.id,
                        username: u.username,
                        bio: u.bio,
                        image: u.image,
                    })),
                );
            }
        }
        let mut missing: Vec<Id> = articles
            .iter()
            .map(|a| a.author_id)
            .filter(|id| !authors.contains_key(id))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let profiles = join_all(missing.iter().map(|&id| self.profile_record(id))).await;
        for (id, profile) in missing.into_iter().zip(profiles) {
            match profile {
                Ok(Some(p)) => {
                    authors.insert(id, p);
                }
                Ok(None) => {}
                // an author whose cluster is down and whose profile is not cached: their
                // articles are left out below, and the answer says it is partial
                Err(AppError::Unavailable) => crescendo_store::fence::note_partial(),
                Err(e) => return Err(e),
            }
        }
        for a in articles {
            let Some(author) = authors.get(&a.author_id) else {
                tracing::warn!(article_id = %a.id, "article without author; skipped");
                continue;
            };
            items.push((a, Arc::clone(author)));
        }
        self.join_viewer(viewer, &items).await
    }

    /// Adds what only `viewer` sees (`favorited`, `following`) to shared records.
    async fn join_viewer(
        &self,
        viewer: Option<Id>,
        items: &[SharedArticle],
    ) -> AppResult<Vec<ArticleView>> {
        let (followees, favorites) = match viewer {
            Some(v) => try_join(self.followees(v), self.favorites_of(v)).await?,
            None => (Arc::default(), Arc::default()),
        };
        Ok(items
            .iter()
            .map(|(a, p)| ArticleView {
                article: Arc::clone(a),
                author: ProfileView {
                    profile: Arc::clone(p),
                    following: viewer.is_some_and(|v| v != p.id)
                        && followees.binary_search(&p.id).is_ok(),
                },
                favorited: favorites.binary_search(&a.id).is_ok(),
            })
            .collect())
    }

    async fn view(
        &self,
        viewer: Option<Id>,
        a: Arc<Cached<ArticleRecord>>,
    ) -> AppResult<ArticleView> {
        let author = self
            .profile_record(a.author_id)
            .await?
            .ok_or(AppError::NotFound("article"))?;
        self.join_viewer(viewer, &[(a, author)])
            .await?
            .pop()
            .ok_or(AppError::NotFound("article"))
    }

    fn page(&self, limit: u32, offset: u32) -> AppResult<Page> {
        if limit > self.inner.max_page_size {
            return Err(AppError::invalid(
                "limit",
                format!("must be at most {}", self.inner.max_page_size),
            ));
        }
        Ok(Page { limit, offset })
    }

    async fn hydrate(&self, viewer: Option<Id>, ids: &[Id]) -> AppResult<Vec<ArticleView>> {
        if !self.caching() {
            // one query for the whole window, kept in the list's order
            let mut found: HashMap<Id, ArticleRecord> = self
                .store()
                .articles_by_ids(ids)
                .await?
                .into_iter()
                .map(|a| (a.id, a))
                .collect();
            let records = ids
                .iter()
                .filter_map(|id| found.remove(id))
                .map(|a| Arc::new(Cached::new(a)))
                .collect();
            return self.views(viewer, records).await;
        }
        // all at once: with a cache tier across the network, one round trip's wait, not twenty
        let mut found = Vec::with_capacity(ids.len());
        for record in join_all(ids.iter().map(|&id| self.article_record(id))).await {
            match record {
                // an article deleted since the list was read is simply left out
                Ok(r) => found.extend(r),
                // and so is one whose cluster is down and whose record is not cached (a
                // sharded feed lists articles of every cluster): the answer says it is partial
                Err(AppError::Unavailable) => crescendo_store::fence::note_partial(),
                Err(e) => return Err(e),
            }
        }
        self.views(viewer, found).await
    }

    /// A page of articles, newest first, with the number of matching articles.
    ///
    /// # Errors
    /// [`AppError::Validation`] for a page size over the limit.
    pub async fn list_articles(
        &self,
        viewer: Option<Id>,
        q: ListQuery,
    ) -> AppResult<(Vec<ArticleView>, u64)> {
        let page = self.page(q.limit, q.offset)?;
        // an unknown username matches nothing
        let author = match &q.author {
            Some(name) => match self.user_id(name).await? {
                Some(id) => Some(id),
                None => return Ok((Vec::new(), 0)),
            },
            None => None,
        };
        let favorited_by = match &q.favorited {
            Some(name) => match self.user_id(name).await? {
                Some(id) => Some(id),
                None => return Ok((Vec::new(), 0)),
            },
            None => None,
        };
        let filter = match (q.tag, author, favorited_by) {
            (None, None, None) => ArticleFilter::All,
            (Some(t), None, None) => ArticleFilter::Tag(t),
            (None, Some(a), None) => ArticleFilter::Author(a),
            (None, None, Some(f)) => ArticleFilter::FavoritedBy(f),
            (tag, author, favorited_by) => ArticleFilter::Match {
                tag,
                author,
                favorited_by,
            },
        };
        let (views, total) = match self.head_page(&filter, page).await? {
            Some(snap) => (self.join_viewer(viewer, &snap.items).await?, snap.total),
            None => {
                let ids = self.list_ids(&filter, page).await?;
                (self.hydrate(viewer, &ids.ids).await?, ids.total)
            }
        };
        crate::lists::note_list(&filter, &views);
        Ok((views, total))
    }

    /// The viewer's feed: articles by the users they follow, newest first.
    ///
    /// # Errors
    /// [`AppError::Validation`] for a page size over the limit.
    pub async fn feed(
        &self,
        viewer: Id,
        limit: u32,
        offset: u32,
    ) -> AppResult<(Vec<ArticleView>, u64)> {
        let page = self.page(limit, offset)?;
        let filter = ArticleFilter::Feed(viewer);
        let ids = self.list_ids(&filter, page).await?;
        let mut views = self.hydrate(Some(viewer), &ids.ids).await?;
        // A deleted article stays in timelines until its job removes it: the page is filled
        // from further down the feed rather than shown short.
        let mut next = page.offset.saturating_add(page.limit);
        let short = views.len() < ids.ids.len();
        while short && views.len() < page.limit as usize && u64::from(next) < ids.total {
            let want = Page {
                limit: page.limit - views.len() as u32,
                offset: next,
            };
            let more = self.list_ids(&filter, want).await?;
            if more.ids.is_empty() {
                break;
            }
            next = next.saturating_add(more.ids.len() as u32);
            views.extend(self.hydrate(Some(viewer), &more.ids).await?);
        }
        Ok((views, ids.total))
    }

    /// One article by slug. The ID in the slug decides; an old title prefix still works.
    ///
    /// # Errors
    /// [`AppError::NotFound`].
    pub async fn article(&self, viewer: Option<Id>, slug: &str) -> AppResult<ArticleView> {
        let a = self.article_by_slug(slug).await?;
        self.view(viewer, a).await
    }

    /// Keys a change to article `a` makes stale: the record and every list it is in.
    fn article_keys(a: &ArticleRecord, extra_tags: &[String]) -> Vec<String> {
        let mut k = vec![keys::article(a.id)];
        k.extend(Self::list_keys(
            a.author_id,
            a.tags.iter().chain(extra_tags),
        ));
        k
    }

    /// The keys of the lists an article by `author` with `tags` is in, and the popular tags.
    fn list_keys<'t>(author: Id, tags: impl IntoIterator<Item = &'t String>) -> Vec<String> {
        let mut k = vec![
            keys::head_all(),
            keys::head_author(author),
            keys::popular_tags(),
        ];
        k.extend(tags.into_iter().map(|t| keys::head_tag(t)));
        k
    }

    /// Publishes an article.
    ///
    /// # Errors
    /// [`AppError::Validation`] for blank or oversized fields.
    #[tracing::instrument(skip_all, fields(user_id = %author))]
    pub async fn create_article(&self, author: Id, input: ArticleInput) -> AppResult<ArticleView> {
        let mut errs = FieldErrors::default();
        let title = errs.check(Text::required(
            "title",
            input.title.as_deref().unwrap_or(""),
            300,
        ));
        let description = errs.check(Text::required(
            "description",
            input.description.as_deref().unwrap_or(""),
            1_000,
        ));
        let body = errs.check(Text::required(
            "body",
            input.body.as_deref().unwrap_or(""),
            100_000,
        ));
        let tags = validate_tags(&mut errs, input.tags.as_ref()).unwrap_or_default();
        let cover_image =
            validate_cover(&mut errs, input.cover_image.as_deref()).unwrap_or_default();
        errs.into_result()?;
        // a new article's own key tags nothing an edge keeps yet: the lists it joins do
        let edge_keys = Self::list_keys(author, &tags);
        let (a, purge) = self
            .purging(
                &edge_keys,
                self.store().create_article(NewArticle {
                    author_id: author,
                    title: title.expect("checked"),
                    description: description.expect("checked"),
                    body: body.expect("checked"),
                    tags,
                    cover_image,
                }),
            )
            .await?;
        self.invalidate(Self::article_keys(&a, &[]), purge).await?;
        tracing::info!(article_id = %a.id, "article published");
        self.view(Some(author), Arc::new(Cached::new(a))).await
    }

    /// Changes an article; only its author may.
    ///
    /// # Errors
    /// [`AppError::NotFound`], [`AppError::Forbidden`], [`AppError::Validation`].
    #[tracing::instrument(skip_all, fields(user_id = %user))]
    pub async fn update_article(
        &self,
        user: Id,
        slug: &str,
        input: ArticleInput,
    ) -> AppResult<ArticleView> {
        let old = self.article_by_slug(slug).await?;
        if old.author_id != user {
            return Err(AppError::Forbidden);
        }
        let mut errs = FieldErrors::default();
        let title = errs.check_given(input.title.as_deref(), |t| Text::required("title", t, 300));
        let description = errs.check_given(input.description.as_deref(), |d| {
            Text::required("description", d, 1_000)
        });
        let body = errs.check_given(input.body.as_deref(), |b| {
            Text::required("body", b, 100_000)
        });
        let tags = validate_tags(&mut errs, input.tags.as_ref());
        let cover_image = validate_cover(&mut errs, input.cover_image.as_deref());
        errs.into_result()?;
        let edge_keys = Self::article_keys(&old, tags.as_deref().unwrap_or_default());
        let (a, purge) = self
            .purging(
                &edge_keys,
                self.store().update_article(
                    old.id,
                    ArticleChanges {
                        title,
                        description,
                        body,
                        tags,
                        cover_image,
                    },
                ),
            )
            .await?;
        self.invalidate(Self::article_keys(&a, &old.tags), purge)
            .await?;
        self.view(Some(user), Arc::new(Cached::new(a))).await
    }

    /// Deletes an article with its comments and favourites; only its author may.
    ///
    /// # Errors
    /// [`AppError::NotFound`], [`AppError::Forbidden`].
    #[tracing::instrument(skip_all, fields(user_id = %user))]
    pub async fn delete_article(&self, user: Id, slug: &str) -> AppResult<()> {
        let a = self.article_by_slug(slug).await?;
        if a.author_id != user {
            return Err(AppError::Forbidden);
        }
        let mut k = Self::article_keys(&a, &[]);
        k.push(keys::comments(a.id));
        let (_, purge) = self.purging(&k, self.store().delete_article(a.id)).await?;
        self.invalidate(k, purge).await
    }

    /// Favourites an article (again is fine).
    ///
    /// # Errors
    /// [`AppError::NotFound`].
    #[tracing::instrument(skip_all, fields(user_id = %user))]
    pub async fn favorite(&self, user: Id, slug: &str) -> AppResult<ArticleView> {
        let a = self.article_by_slug(slug).await?;
        let k = vec![keys::article(a.id), keys::favorites(user)];
        let (_, purge) = self
            .purging(&k, self.store().favorite(user, a.id))
            .await
            .map_err(|e| match AppError::from(e) {
                AppError::NotFound(_) => AppError::NotFound("article"),
                other => other,
            })?;
        self.invalidate(k, purge).await?;
        let a = self.article_by_slug(slug).await?;
        self.view(Some(user), a).await
    }

    /// Removes a favourite (none is fine).
    ///
    /// # Errors
    /// [`AppError::NotFound`].
    #[tracing::instrument(skip_all, fields(user_id = %user))]
    pub async fn unfavorite(&self, user: Id, slug: &str) -> AppResult<ArticleView> {
        let a = self.article_by_slug(slug).await?;
        let k = vec![keys::article(a.id), keys::favorites(user)];
        let (_, purge) = self
            .purging(&k, self.store().unfavorite(user, a.id))
            .await?;
        self.invalidate(k, purge).await?;
        let a = self.article_by_slug(slug).await?;
        self.view(Some(user), a).await
    }

    /// The most used tags.
    ///
    /// # Errors
    /// Store failures.
    pub async fn tags(&self) -> AppResult<Arc<Vec<String>>> {
        let t = self
            .cached(&keys::popular_tags(), || async {
                Ok::<_, AppError>(Some(self.store().popular_tags(100).await?))
            })
            .await?;
        Ok(t.unwrap_or_default())
    }
}
